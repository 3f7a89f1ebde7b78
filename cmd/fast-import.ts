#!/usr/bin/env node
import path from "node:path";
import { pino } from "pino";
import { blobStoreOptionsFromEnv, openBlobStore } from "../src/blob/index.js";
import { formatUsage, parseFlags, type FlagSpecs } from "../src/config/flags.js";
import { UsageError } from "../src/config/usage-error.js";
import { resourceIdProblem } from "../src/ids/index.js";
import { timelinePrefix, type TimelineRef } from "../src/timeline/index.js";
import { FastImportError, LogReporter, resolvePgBinaries, runFastImport, TtyReporter, formatBytes, type ImportReporter } from "../src/fastimport/index.js";

const flags = {
  source: { type: "string", valueName: "URI", help: "libpq URI of the source, postgresql://user[:password]@host:port/dbname (the password may instead come from PGPASSWORD); required" },
  storage: { type: "string", valueName: "URL", help: "blob store for the snapshot: file:///abs/dir or s3://bucket/prefix (AWS_ENDPOINT_URL, AWS_REGION and credentials from the environment); required" },
  prefix: { type: "string", valueName: "P", help: "key prefix of the snapshot in the store: P/pgdata/…, P/status/pgdata, P/status/fast_import; refused when it already holds a done snapshot; required unless --timeline-id" },
  "tenant-id": { type: "string", valueName: "T", help: "with --timeline-id: the tenant of the timeline to create" },
  "timeline-id": { type: "string", valueName: "TL", help: "make the import the first snapshot of this new timeline in --storage (what compute-ctl's base_data source \"timeline\" starts from) instead of P/pgdata/; status objects go to P (default tenants/T/timelines/TL/fast-import); refused when the timeline exists" },
  workdir: { type: "string", valueName: "DIR", help: "working directory for the dump and the local PGDATA; must be empty or absent; emptied again after success, kept after a failure; required" },
  jobs: { type: "number", help: "parallel pg_dump / pg_restore / VACUUM jobs (default: the CPU count)" },
  "memory-mb": { type: "number", valueName: "M", help: "memory for the local Postgres in MiB: 20% shared_buffers, 60% maintenance_work_mem shared by the jobs (default: a quarter of the machine's)" },
  databases: { type: "list", valueName: "DB,DB", help: "databases to import (default: the one the --source URI names)" },
  roles: { type: "list", valueName: "ROLE,ROLE", help: "roles to import, with password hashes, settings and memberships, without SUPERUSER, REPLICATION and BYPASSRLS (default: none; objects are owned by the snapshot's superuser either way)" },
  "whole-instance": { type: "boolean", help: "import every database that is not a template and allows connections, and every role (pg_dumpall --roles-only, attributes as for --roles), instead of --databases/--roles" },
  "pg-bin": { type: "string", valueName: "DIR", help: "directory with initdb, postgres, pg_dump, pg_restore, pg_dumpall, pg_controldata (default: the bundle's .pgmesh/bundle/v15/bin if built, else /usr/lib/postgresql/15/bin)" },
  "upload-concurrency": { type: "number", default: 16, help: "files uploaded at once" },
} satisfies FlagSpecs;

const program = {
  name: "fast-import",
  description: [
    "Onboards an existing PostgreSQL database into blob storage as a PGDATA snapshot a compute can start from",
    "(compute-ctl base_data {\"source\": \"snapshot\"}): initdb into the working directory, a local Postgres tuned",
    "for bulk load, pg_dump --format directory --jobs N from the source, pg_restore --jobs N without owners,",
    "privileges, publications, subscriptions, security labels, tablespaces and event triggers, VACUUM (FREEZE,",
    "ANALYZE), a clean shutdown, then a parallel streamed upload. P/status/pgdata {\"done\": true} is written last;",
    "on failure it says {\"done\": false, \"error\": …} and the partial P/pgdata/ objects are deleted.",
    "Shows a live progress line on a terminal, JSON logs otherwise. Exit codes: 0 done, 1 import failed, 2 bad usage.",
  ].join("\n"),
};

async function main(): Promise<number> {
  const { values, help } = parseFlags(flags, process.argv.slice(2), process.env);
  if (help) {
    process.stdout.write(formatUsage(program, flags));
    return 0;
  }
  for (const name of ["source", "storage", "workdir"] as const) {
    if (!values[name]) throw new UsageError(`--${name} is required (or PGMESH_${name.toUpperCase()}); see --help`);
  }
  const timeline = timelineOf(values.tenantId, values.timelineId);
  if (!values.prefix && !timeline) throw new UsageError("--prefix is required (or PGMESH_PREFIX) unless --tenant-id and --timeline-id name a timeline; see --help");
  const prefix = (values.prefix ?? `${timelinePrefix(timeline!)}fast-import`).replace(/^\/+|\/+$/g, "");
  const reporter: ImportReporter = process.stderr.isTTY ? new TtyReporter(process.stderr) : new LogReporter(pino({ name: "fast-import" }));
  const store = await openBlobStore(values.storage!, blobStoreOptionsFromEnv(process.env));
  const abort = new AbortController();
  for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => abort.abort(new Error(signal)));
  try {
    const result = await runFastImport(
      { store, prefix, ...(timeline ? { timeline } : {}) },
      {
        source: values.source!,
        ...(process.env.PGPASSWORD ? { sourcePassword: process.env.PGPASSWORD } : {}),
        workdir: path.resolve(values.workdir!),
        ...(values.jobs === undefined ? {} : { jobs: values.jobs }),
        ...(values.memoryMb === undefined ? {} : { memoryMb: values.memoryMb }),
        databases: values.databases,
        roles: values.roles,
        wholeInstance: values.wholeInstance,
        pgBinaries: await resolvePgBinaries(values.pgBin),
        uploadConcurrency: values.uploadConcurrency,
      },
      reporter,
      abort.signal,
    );
    const seconds = result.timingsMs.total! / 1000;
    reporter.info(
      `done: ${result.databases.length} database(s), ${result.tables} tables, ${result.files} files, ${formatBytes(result.bytes.uploaded)} in ${seconds.toFixed(1)} s; ${timeline ? `timeline ${timeline.tenantId}/${timeline.timelineId} starts from it` : `snapshot at ${prefix}/`}`,
      { result },
    );
    return 0;
  } catch (error) {
    if (!(error instanceof FastImportError)) throw error;
    if (error.phase === "options") throw new UsageError(error.message);
    process.stderr.write(`fast-import: ${error.message}\n`);
    return 1;
  } finally {
    await store.close();
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`fast-import: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(error instanceof UsageError ? 2 : 1);
  },
);

function timelineOf(tenantId: string | undefined, timelineId: string | undefined): TimelineRef | undefined {
  if (tenantId === undefined && timelineId === undefined) return undefined;
  if (!tenantId || !timelineId) throw new UsageError("--tenant-id and --timeline-id go together; give both");
  for (const [flag, id] of [["--tenant-id", tenantId], ["--timeline-id", timelineId]] as const) {
    const problem = resourceIdProblem(id);
    if (problem) throw new UsageError(`${flag} ${JSON.stringify(id)} ${problem}`);
  }
  return { tenantId, timelineId };
}
