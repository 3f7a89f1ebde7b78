import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";
import { Code, createClient, type Client } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TimelineService } from "../gen/pgmesh/timeline/v1/timeline_pb.js";
import { openBlobStore, type BlobStore } from "../src/blob/index.js";
import { createClientTransport, serviceOf, type ServerHandle } from "../src/server/index.js";
import { createTimelineMeta } from "../src/timeline/index.js";
import { compileTimelineCtlOptions, createTimelineHandlers, runTimelineCommand, TimelineCtl } from "../src/timelinectl/index.js";
import { callFailure } from "./helpers/call-failure.js";
import { runCommand } from "./helpers/run-command.js";
import { createTestKeys, type TestKeys } from "./helpers/test-keys.js";
import { startTestServer } from "./helpers/test-server.js";

const tenantId = "tenant1";
let root: string;
let storageUrl: string;
let store: BlobStore;
let keys: TestKeys;
let server: ServerHandle;

function clientOf(url: string, token: string): Client<typeof TimelineService> {
  return createClient(TimelineService, createClientTransport({ baseUrl: url, token }));
}

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), "pgmesh-timeline-svc-"));
  storageUrl = pathToFileURL(root).href;
  store = await openBlobStore(storageUrl);
  const base = { tenantId, pgMajor: 15, pgTli: 1, walSegmentBytes: 16 * 1024 * 1024, createdAt: new Date() };
  await createTimelineMeta(store, { ...base, timelineId: "main", ancestor: null });
  await createTimelineMeta(store, { ...base, timelineId: "child", ancestor: { timelineId: "main", lsn: 0n } });
  keys = await createTestKeys();
  const ctl = new TimelineCtl(store, compileTimelineCtlOptions());
  server = await startTestServer({ keys, services: [serviceOf({ service: TimelineService, impl: createTimelineHandlers(ctl) })] });
});

afterAll(async () => {
  await server?.close();
  await store?.close();
  await keys?.remove();
  await rm(root, { recursive: true, force: true });
});

describe("TimelineService", () => {
  it("lists a tenant's timelines with their ancestors for a control_plane token", async () => {
    const client = clientOf(server.url, await keys.mint({ scope: "control_plane" }));
    const { timelines } = await client.listTimelines({ tenantId });
    expect(timelines.map((t) => [t.timelineId, t.ancestor?.timelineId ?? null, t.ancestor?.lsn ?? null])).toEqual([
      ["child", "main", "0/00000000"],
      ["main", null, null],
    ]);
  });

  it("refuses a compute token: PERMISSION_DENIED", async () => {
    const client = clientOf(server.url, await keys.computeToken(tenantId, "main", "ep1"));
    const err = await callFailure(client.listTimelines({ tenantId }));
    expect(err.code).toBe(Code.PermissionDenied);
    expect(err.rawMessage).toMatch(/needs scope control_plane/);
  });

  it("refuses to delete a timeline a branch begins in: FAILED_PRECONDITION naming the branch", async () => {
    const client = clientOf(server.url, await keys.mint({ scope: "control_plane" }));
    const err = await callFailure(client.deleteTimeline({ tenantId, timelineId: "main" }));
    expect(err.code).toBe(Code.FailedPrecondition);
    expect(err.rawMessage).toMatch(/timeline tenant1\/main: branches child begin in it/);
  });

  it("refuses an LSN that is not X/Y: INVALID_ARGUMENT", async () => {
    const client = clientOf(server.url, await keys.mint({ scope: "control_plane" }));
    const err = await callFailure(client.createTimeline({ tenantId, newTimelineId: "b", ancestorTimelineId: "main", point: { case: "lsn", value: "12" } }));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toMatch(/^lsn: "12" is not an LSN/);
  });
});

describe("timeline-service binary", () => {
  let child: ChildProcess | undefined;
  afterAll(() => {
    child?.kill("SIGTERM");
  });

  it("serves TimelineService on its --listen port with --auth-keys", async () => {
    child = spawn(process.execPath, [path.resolve(import.meta.dirname, "../dist/cmd/timeline-service.js"),
      "--listen", "127.0.0.1:0", "--storage", storageUrl, "--auth-keys", keys.jwksPath], { stdio: ["ignore", "pipe", "pipe"] });
    const url = await new Promise<string>((resolve, reject) => {
      createInterface({ input: child!.stdout! }).on("line", (line) => {
        const entry = JSON.parse(line) as { msg?: string; url?: string };
        if (entry.msg === "timeline-service serving" && entry.url) resolve(entry.url);
      });
      child!.once("exit", (code) => reject(new Error(`timeline-service exited with ${code}`)));
    });
    const { timelines } = await clientOf(url, await keys.mint({ scope: "control_plane" })).listTimelines({ tenantId });
    expect(timelines.map((t) => t.timelineId)).toEqual(["child", "main"]);
  });
});

describe("pgmesh-timeline", () => {
  it("lists timelines as proto JSON", async () => {
    const result = await runCommand(runTimelineCommand, ["list", "--storage", storageUrl, "--tenant", tenantId]);
    expect(result.code).toBe(0);
    const listed = JSON.parse(result.stdout) as { timelines: { timelineId: string; ancestor?: { timelineId: string } }[] };
    expect(listed.timelines.map((t) => [t.timelineId, t.ancestor?.timelineId])).toEqual([["child", "main"], ["main", undefined]]);
  });

  it("exits 1 with the error's code and message when a delete is refused", async () => {
    const result = await runCommand(runTimelineCommand, ["delete", "--storage", storageUrl, "--tenant", tenantId, "--timeline", "main"]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^pgmesh-timeline: FailedPrecondition: timeline tenant1\/main: branches child begin in it/);
  });

  it("refuses --lsn together with --time before opening the store (exit 2)", async () => {
    const result = await runCommand(runTimelineCommand, ["branch", "--storage", "file:///nonexistent/x", "--tenant", tenantId, "--timeline", "b", "--ancestor", "main", "--lsn", "0/1", "--time", "2026-01-01T00:00:00Z"]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/--lsn and --time exclude each other/);
  });
});
