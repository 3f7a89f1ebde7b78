import { create, toJsonString } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { blobStoreOptionsFromEnv, openBlobStore } from "../blob/index.js";
import { defineFlags, parseCommandLine, parseDurationSec, UsageError, type CommandLineIo } from "../config/index.js";
import {
  CollectGarbageResponseSchema, CreateTimelineRequestSchema, CreateTimelineResponseSchema, DeleteTimelineResponseSchema,
  ListTimelinesResponseSchema,
} from "../../gen/pgmesh/timeline/v1/timeline_pb.js";
import { TimelineCtl } from "./timeline-ctl.js";
import { compileTimelineCtlOptions } from "./timeline-ctl-options.js";
import { branchPointOf, toCollectGarbageResponse, toDeletedCounts, toTimelineInfo } from "./timeline-handlers.js";

const commands = ["list", "branch", "delete", "gc"] as const;

const description = `Operate on the timelines of a tenant directly in the blob store (the same library the
timeline-service serves). Prints the TimelineService response as proto JSON.

Commands:
  list   --tenant T                                      timelines with LSN range, size, ancestor
  branch --tenant T --timeline NEW --ancestor A [--lsn X/Y | --time ISO]
                                                         a branch of A (default: at A's durable end)
  delete --tenant T --timeline TL                        refused while branches of TL exist
  gc     --tenant T [--pitr-retention 7d] [--dry-run]    delete what nothing can reach`;

const flags = defineFlags({
  storage: { type: "string", valueName: "URL", help: "Blob storage of the timelines: file:///abs/dir or s3://bucket/prefix" },
  tenant: { type: "string", valueName: "ID", help: "tenant_id" },
  timeline: { type: "string", valueName: "ID", help: "branch: the new timeline_id; delete: the timeline to delete" },
  ancestor: { type: "string", valueName: "ID", help: "branch: the ancestor timeline_id" },
  lsn: { type: "string", valueName: "X/Y", help: "branch: the branch point (normalised down to a record boundary)" },
  time: { type: "string", valueName: "ISO-8601", help: "branch: branch at the last commit at or before this time" },
  "pitr-retention": { type: "string", valueName: "DURATION", default: "7d", help: "gc: keep point-in-time starts this far back" },
  "file-chunk-grace": { type: "string", valueName: "DURATION", default: "1h", help: "gc: keep unreferenced file chunks younger than this" },
  "dry-run": { type: "boolean", help: "gc: report, delete nothing" },
});

/** The pgmesh-timeline command, reading argv/env and writing through `io` (the process by default). */
export async function runTimelineCommand(io: Partial<CommandLineIo> = {}): Promise<void> {
  const program = { name: "pgmesh-timeline", usage: `${commands.join("|")} --storage URL --tenant T [flags]`, description };
  const parsed = parseCommandLine(program, flags, {
    allowPositionals: true,
    io,
    validate({ positionals, values }) {
      const [command, ...extra] = positionals;
      if (!(commands as readonly string[]).includes(command ?? "")) {
        throw new UsageError(`expected a command, one of ${commands.join(", ")}, got ${command === undefined ? "none" : `"${command}"`}`);
      }
      if (extra.length > 0) throw new UsageError(`unexpected arguments: ${extra.join(" ")}`);
      if (!values.storage || !/^(file|s3):\/\//.test(values.storage)) throw new UsageError("--storage must be a file:// or s3:// URL");
      if (!values.tenant) throw new UsageError("--tenant is required");
      if ((command === "branch" || command === "delete") && !values.timeline) throw new UsageError(`${command} needs --timeline`);
      if (command === "branch" && !values.ancestor) throw new UsageError("branch needs --ancestor");
      if (values.lsn !== undefined && values.time !== undefined) throw new UsageError("--lsn and --time exclude each other; give one");
      let time: Date | undefined;
      if (values.time !== undefined) {
        time = new Date(values.time);
        if (Number.isNaN(time.getTime())) throw new UsageError(`--time must be an ISO-8601 time such as 2026-12-06T10:00:00Z, got "${values.time}"`);
      }
      const options = compileTimelineCtlOptions({
        pitrRetentionMs: parseDurationSec(values.pitrRetention, "--pitr-retention") * 1000,
        fileChunkGraceMs: parseDurationSec(values.fileChunkGrace, "--file-chunk-grace") * 1000,
      });
      return { command: command as (typeof commands)[number], storage: values.storage, tenantId: values.tenant, values, time, options };
    },
  });
  const { command, storage, tenantId, values, time, options } = parsed;
  const stdout = io.stdout ?? ((text: string) => void process.stdout.write(text));
  const stderr = io.stderr ?? ((text: string) => void process.stderr.write(text));
  const store = await openBlobStore(storage, blobStoreOptionsFromEnv(io.env ?? process.env));
  const ctl = new TimelineCtl(store, options);
  try {
    stdout(`${await run()}\n`);
  } catch (err) {
    if (!(err instanceof ConnectError)) throw err;
    stderr(`pgmesh-timeline: ${Code[err.code]}: ${err.rawMessage}\n`);
    (io.exit ?? process.exit)(1);
  } finally {
    await store.close();
  }

  async function run(): Promise<string> {
    switch (command) {
      case "list":
        return toJsonString(ListTimelinesResponseSchema, create(ListTimelinesResponseSchema, { timelines: (await ctl.list(tenantId)).map(toTimelineInfo) }), { prettySpaces: 2 });
      case "branch": {
        const request = create(CreateTimelineRequestSchema, {
          point: values.lsn !== undefined ? { case: "lsn", value: values.lsn } : time ? { case: "time", value: timestampFromDate(time) } : { case: undefined },
        });
        const summary = await ctl.branch({ tenantId, timelineId: values.timeline! }, values.ancestor!, branchPointOf(request));
        return toJsonString(CreateTimelineResponseSchema, create(CreateTimelineResponseSchema, { timeline: toTimelineInfo(summary) }), { prettySpaces: 2 });
      }
      case "delete": {
        const deleted = await ctl.delete({ tenantId, timelineId: values.timeline! });
        return toJsonString(DeleteTimelineResponseSchema, create(DeleteTimelineResponseSchema, { deleted: toDeletedCounts(deleted) }), { prettySpaces: 2 });
      }
      case "gc": {
        const report = await ctl.collectGarbage(tenantId, { dryRun: values.dryRun ?? false });
        return toJsonString(CollectGarbageResponseSchema, toCollectGarbageResponse(report), { prettySpaces: 2 });
      }
    }
  }
}
