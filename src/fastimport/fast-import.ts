import { readdir, rm, statfs } from "node:fs/promises";
import path from "node:path";
import type { BlobStore } from "../blob/index.js";
import { resolveUnprivilegedUser } from "../pg/index.js";
import type { ToolContext } from "./dump-restore.js";
import {
  asFastImportError,
  DiskFullError,
  FastImportError,
  ImportCancelledError,
  SnapshotExistsError,
  TimelineExistsError,
  type ImportPhase,
} from "./fast-import-errors.js";
import { compileFastImportOptions, type FastImportOptions } from "./fast-import-options.js";
import type { ImportReporter } from "./import-reporter.js";
import { diskFullLine } from "./disk-full-line.js";
import { importDatabase } from "./import-database.js";
import { LocalCluster } from "./local-cluster.js";
import { PhaseRunner } from "./phase-runner.js";
import { importRoles } from "./import-roles.js";
import { listSnapshotFiles } from "./snapshot-files.js";
import { getJson, putJson, snapshotKeys } from "./snapshot-status.js";
import { importIntoTimeline } from "./import-into-timeline.js";
import { deleteTimeline, describeTimeline, readTimelineMeta, type TimelineRef } from "../timeline/index.js";
import { inspectSource } from "./source-catalog.js";
import { uploadSnapshot } from "./upload-snapshot.js";
import { prepareWorkdir } from "./workdir.js";

/**
 * Where the snapshot goes: a blob store and the prefix P inside it (status
 * objects, and P/pgdata/); or, with `timeline`, a new timeline of that store
 * whose first snapshot it becomes (status objects still under P).
 */
export interface SnapshotTarget {
  readonly store: BlobStore;
  readonly prefix: string;
  readonly timeline?: TimelineRef;
}

/** What a successful import reports (and stores in P/status/fast_import). */
export interface FastImportResult {
  readonly databases: readonly string[];
  readonly roles: readonly string[];
  readonly tables: number;
  readonly files: number;
  readonly timingsMs: Readonly<Record<string, number>>;
  readonly bytes: { readonly sourceEstimate: number; readonly dump: number; readonly pgdata: number; readonly uploaded: number };
}

/**
 * Imports the source into a fresh local Postgres and uploads its PGDATA to
 * P/pgdata/, then writes P/status/pgdata {"done": true} last.
 *
 * Never leaves a snapshot that looks good but is not: P/status/pgdata says
 * {"done": false} from the start; on failure it gets the error, the partial
 * P/pgdata/ objects are deleted, and P/status/fast_import records the failed
 * phase. A prefix that already holds a done snapshot is refused untouched.
 */
export async function runFastImport(
  target: SnapshotTarget,
  options: FastImportOptions,
  reporter: ImportReporter,
  signal?: AbortSignal,
): Promise<FastImportResult> {
  const keys = snapshotKeys(target.prefix);
  if (target.timeline && (await readTimelineMeta(target.store, target.timeline))) throw new TimelineExistsError(target.timeline);
  const existing = await getJson(target.store, keys.pgdataStatus);
  if (existing?.done === true) throw new SnapshotExistsError(keys.pgdataStatus);
  let timelineCreated = false;

  const startedAt = new Date();
  const phases = new PhaseRunner(reporter, signal);
  const bytes = { sourceEstimate: 0, dump: 0, pgdata: 0, uploaded: 0 };
  let cluster: LocalCluster | undefined;

  await putJson(target.store, keys.pgdataStatus, { done: false, state: "importing", started_at: startedAt.toISOString() });
  await target.store.deletePrefix(keys.pgdataPrefix);

  try {
    const compiled = compileFastImportOptions(options);
    const { source, jobs, selection } = compiled;
    reporter.info(`importing ${source.redacted()} into ${keys.pgdataPrefix} (${jobs} jobs, ${compiled.memoryMb} MiB)`, {
      source: source.redacted(),
      storage_prefix: target.prefix,
      jobs,
      memory_mb: compiled.memoryMb,
      selection: selection.wholeInstance ? "whole instance" : { databases: selection.databases, roles: selection.roles },
    });

    const { layout, catalog } = await phases.run("check", source.redacted(), async () => {
      const layout = await prepareWorkdir(compiled.workdir);
      const catalog = await inspectSource(source, selection, compiled.pgBinaries.major);
      return { layout, catalog };
    });
    bytes.sourceEstimate = catalog.databases.reduce((sum, db) => sum + db.sizeBytes, 0);
    const tools: ToolContext = { binaries: compiled.pgBinaries, jobs, workdir: layout.root, ...(signal ? { signal } : {}) };
    const user = await resolveUnprivilegedUser();
    const local = new LocalCluster({ binaries: compiled.pgBinaries, user, layout, superuser: compiled.superuser, memoryMb: compiled.memoryMb, jobs });
    cluster = local;

    await phases.run("initdb", layout.pgdata, () => local.initdb());
    await phases.run("start", "bulk-load settings", async () => {
      await local.start();
      await local.createDatabases(catalog.databases);
    });
    const roles = await phases.run("roles", catalog.roles === undefined ? "every role" : `${catalog.roles.length} chosen`, () =>
      importRoles(tools, source, catalog, local, compiled.superuser, reporter),
    );

    let tables = 0;
    for (const [index, db] of catalog.databases.entries()) {
      const done = await importDatabase({ phases, tools, source, local, layout, reporter }, db, index);
      bytes.dump += done.dumpBytes;
      tables += done.tables;
    }

    const control = await phases.run("stop", "fast shutdown", () => local.stop());
    cluster = undefined;
    const snapshot = await listSnapshotFiles(layout.pgdata, control.redoWalFile);
    bytes.pgdata = snapshot.totalBytes;
    if (target.timeline) {
      const timeline = target.timeline;
      await phases.run("upload", `timeline ${describeTimeline(timeline)}`, async () => {
        timelineCreated = true;
        await importIntoTimeline(target.store, timeline, layout.pgdata, {
          pgMajor: compiled.pgBinaries.major, concurrency: compiled.uploadConcurrency, ...(signal ? { signal } : {}),
        });
        bytes.uploaded = snapshot.totalBytes;
      });
    } else {
      await phases.run("upload", keys.pgdataPrefix, async (sample) => {
        let filesDone = 0;
        sample(() => ({ bytesDone: bytes.uploaded, bytesTotal: snapshot.totalBytes, itemsDone: filesDone, itemsTotal: snapshot.files.length, itemUnit: "files" }));
        await uploadSnapshot(snapshot.files, {
          store: target.store,
          pgdata: layout.pgdata,
          keyPrefix: keys.pgdataPrefix,
          concurrency: compiled.uploadConcurrency,
          ...(signal ? { signal } : {}),
          onProgress: (done, files) => {
            bytes.uploaded = done;
            filesDone = files;
          },
        });
      });
    }

    const result: FastImportResult = {
      databases: catalog.databases.map((db) => db.name),
      roles,
      tables,
      files: snapshot.files.length,
      timingsMs: { ...phases.timingsMs, total: Date.now() - startedAt.getTime() },
      bytes,
    };
    await phases.run("status", keys.pgdataStatus, async () => {
      await putJson(target.store, keys.pgdataStatus, {
        done: true,
        pg_major: compiled.pgBinaries.major,
        files: snapshot.files.length,
        bytes: snapshot.totalBytes,
        empty_dirs: snapshot.emptyDirs,
        databases: result.databases,
        finished_at: new Date().toISOString(),
      });
      await putJson(target.store, keys.jobStatus, jobStatus(startedAt, result.timingsMs, bytes, { done: true, databases: result.databases, roles, tables, files: result.files }));
    });
    // Success: the working directory is emptied again (on failure it is kept for inspection).
    for (const entry of await readdir(layout.root)) await rm(path.join(layout.root, entry), { recursive: true, force: true });
    return result;
  } catch (thrown) {
    phases.stopSampling();
    const error = await explainFailure(phases.current, thrown, cluster, options.workdir, signal);
    await cluster?.kill().catch(() => undefined);
    reporter.warn(`import failed in ${error.phase}: ${error.message}`, { phase: error.phase });
    const timings = { ...phases.timingsMs, total: Date.now() - startedAt.getTime() };
    // Status first, so no reader ever takes the half-uploaded objects for a snapshot.
    await putJson(target.store, keys.pgdataStatus, { done: false, error: error.message, phase: error.phase }).catch(() => undefined);
    await target.store.deletePrefix(keys.pgdataPrefix).catch(() => undefined);
    if (timelineCreated) await deleteTimeline(target.store, target.timeline!).catch(() => undefined);
    await putJson(target.store, keys.jobStatus, jobStatus(startedAt, timings, bytes, { done: false, error: error.message, phase: error.phase })).catch((e: unknown) =>
      reporter.warn(`could not write ${keys.jobStatus}: ${e instanceof Error ? e.message : String(e)}`),
    );
    throw error;
  }
}

function jobStatus(startedAt: Date, timingsMs: Record<string, number>, bytes: FastImportResult["bytes"], outcome: Record<string, unknown>) {
  return {
    command: "pgdata",
    ...outcome,
    started_at: startedAt.toISOString(),
    finished_at: new Date().toISOString(),
    timings_ms: timingsMs,
    bytes: { source_estimate: bytes.sourceEstimate, dump: bytes.dump, pgdata: bytes.pgdata, uploaded: bytes.uploaded },
  };
}

/**
 * Turns what was thrown into the error to report: cancellation stays
 * cancellation; a failure while the local Postgres ran is a full disk when
 * its log says so (a PANIC on a full disk shows to pg_restore only as a lost
 * connection).
 */
async function explainFailure(
  phase: ImportPhase,
  thrown: unknown,
  cluster: LocalCluster | undefined,
  workdir: string,
  signal: AbortSignal | undefined,
): Promise<FastImportError> {
  if (signal?.aborted) return new ImportCancelledError(phase);
  const error = asFastImportError(phase, thrown);
  if (error instanceof DiskFullError) return error;
  const code = (thrown as NodeJS.ErrnoException | undefined)?.code;
  if (code === "ENOSPC") return new DiskFullError(phase, workdir, (thrown as Error).message);
  const logLine = diskFullLine((await cluster?.logTail().catch(() => "")) ?? "");
  if (logLine) return new DiskFullError(phase, workdir, logLine);
  // The server log lives in the working directory too, so a full disk may have swallowed it.
  if (phasesWritingWorkdir.has(phase)) {
    const fs = await statfs(workdir).catch(() => undefined);
    const free = fs ? fs.bavail * fs.bsize : Infinity;
    if (free < nearlyFullBytes) return new DiskFullError(phase, workdir, `${error.message}; ${free} bytes are left free`);
  }
  return error;
}

const phasesWritingWorkdir = new Set<ImportPhase>(["initdb", "start", "dump", "restore", "vacuum", "stop"]);
/** Less free space than this after a failure means the failure was the full disk. */
const nearlyFullBytes = 16 * 1024 * 1024;
