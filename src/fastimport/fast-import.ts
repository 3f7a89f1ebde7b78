import { readdir, rm, stat, statfs } from "node:fs/promises";
import path from "node:path";
import type { BlobStore } from "../blob/index.js";
import { resolveUnprivilegedUser } from "../pg/index.js";
import { dumpDatabase, dumpRoles, readArchiveList, restoreDatabase, type ToolContext } from "./dump-restore.js";
import {
  asFastImportError,
  DiskFullError,
  FastImportError,
  ImportCancelledError,
  SnapshotExistsError,
  type ImportPhase,
} from "./fast-import-errors.js";
import { compileFastImportOptions, type FastImportOptions } from "./fast-import-options.js";
import type { ImportReporter } from "./import-reporter.js";
import { LocalCluster } from "./local-cluster.js";
import { buildRoleScript } from "./role-script.js";
import { listSnapshotFiles } from "./snapshot-files.js";
import { getJson, putJson, snapshotKeys } from "./snapshot-status.js";
import { inspectSource } from "./source-catalog.js";
import { uploadSnapshot } from "./upload-snapshot.js";
import { prepareWorkdir } from "./workdir.js";

/** Where the snapshot goes: a blob store and the prefix P inside it. */
export interface SnapshotTarget {
  readonly store: BlobStore;
  readonly prefix: string;
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
  const existing = await getJson(target.store, keys.pgdataStatus);
  if (existing?.done === true) throw new SnapshotExistsError(keys.pgdataStatus);

  const startedAt = new Date();
  const timingsMs: Record<string, number> = {};
  const bytes = { sourceEstimate: 0, dump: 0, pgdata: 0, uploaded: 0 };
  let current: ImportPhase = "options";
  let cluster: LocalCluster | undefined;
  let sampler: NodeJS.Timeout | undefined;

  const phase = async <T>(name: ImportPhase, detail: string, work: () => Promise<T>): Promise<T> => {
    if (signal?.aborted) throw new ImportCancelledError(name);
    current = name;
    reporter.phaseStarted(name, detail);
    const t0 = performance.now();
    try {
      return await work();
    } finally {
      clearInterval(sampler);
      sampler = undefined;
      const elapsed = Math.round(performance.now() - t0);
      timingsMs[name] = (timingsMs[name] ?? 0) + elapsed;
      reporter.phaseFinished(name, elapsed);
    }
  };
  /** Samples progress while a phase runs, at the reporter's pace. */
  const sample = (read: () => Promise<Parameters<ImportReporter["progress"]>[0]>) => {
    sampler = setInterval(() => void read().then((p) => reporter.progress(p), () => undefined), reporter.progressIntervalMs);
  };

  await putJson(target.store, keys.pgdataStatus, { done: false, state: "importing", started_at: startedAt.toISOString() });
  await target.store.deletePrefix(keys.pgdataPrefix);

  try {
    const compiled = compileFastImportOptions(options);
    const { source, jobs, selection } = compiled;
    reporter.info("importing", {
      source: source.redacted(),
      storage_prefix: target.prefix,
      jobs,
      memory_mb: compiled.memoryMb,
      selection: selection.wholeInstance ? "whole instance" : { databases: selection.databases, roles: selection.roles },
    });

    const { layout, catalog } = await phase("check", source.redacted(), async () => {
      const layout = await prepareWorkdir(compiled.workdir);
      const catalog = await inspectSource(source, selection, compiled.pgBinaries.major);
      return { layout, catalog };
    });
    bytes.sourceEstimate = catalog.databases.reduce((sum, db) => sum + db.sizeBytes, 0);
    const context: ToolContext = { binaries: compiled.pgBinaries, jobs, workdir: layout.root, ...(signal ? { signal } : {}) };
    const user = await resolveUnprivilegedUser();
    const local = new LocalCluster({ binaries: compiled.pgBinaries, user, layout, superuser: compiled.superuser, memoryMb: compiled.memoryMb, jobs });
    cluster = local;

    await phase("initdb", layout.pgdata, () => local.initdb());
    await phase("start", "bulk-load settings", async () => {
      await local.start();
      await local.createDatabases(catalog.databases);
    });

    const roles = await phase("roles", catalog.roles === undefined ? "every role" : `${catalog.roles.length} chosen`, async () => {
      if (catalog.roles?.length === 0) return [];
      const dump = await dumpRoles(context, source, catalog.databases[0]!.name, (m) => reporter.warn(m));
      const script = buildRoleScript(dump, { roles: catalog.roles === undefined ? "all" : new Set(catalog.roles), superuser: compiled.superuser });
      const missing = (catalog.roles ?? []).filter((name) => !script.roles.includes(name));
      if (missing.length > 0) {
        throw new FastImportError("roles", `role(s) ${missing.map((m) => JSON.stringify(m)).join(", ")} do not exist on the source; check --roles`);
      }
      await local.applyRoles(script.statements);
      if (script.skipped.length > 0) reporter.warn("left out role statements fast-import does not carry over", { statements: script.skipped });
      if (script.demoted.length > 0) reporter.warn("roles imported without SUPERUSER, REPLICATION or BYPASSRLS, which a compute's users cannot hold", { roles: script.demoted });
      return script.roles;
    });

    let tables = 0;
    for (const [index, db] of catalog.databases.entries()) {
      const dir = path.join(layout.dumps, `db${index}`);
      let dumped = 0;
      await phase("dump", db.name, async () => {
        const t0 = performance.now();
        sample(async () => ({
          phase: "dump", detail: db.name, bytesDone: await treeBytes(dir), bytesTotal: db.sizeBytes,
          itemsDone: dumped, itemsTotal: db.tables, itemUnit: "tables", phaseElapsedMs: performance.now() - t0,
        }));
        await dumpDatabase(context, source, db.name, dir, () => (dumped += 1));
      });
      bytes.dump += await treeBytes(dir);
      const archive = await readArchiveList(context, dir);
      if (archive.eventTriggers > 0) reporter.warn(`left out ${archive.eventTriggers} event trigger entries of ${JSON.stringify(db.name)}`);
      let restored = 0;
      await phase("restore", db.name, async () => {
        const t0 = performance.now();
        const before = await treeBytes(layout.pgdata);
        sample(async () => ({
          phase: "restore", detail: db.name, bytesDone: Math.max(0, (await treeBytes(layout.pgdata)) - before), bytesTotal: db.sizeBytes,
          itemsDone: restored, itemsTotal: archive.tables, itemUnit: "tables", phaseElapsedMs: performance.now() - t0,
        }));
        await restoreDatabase(context, dir, `${dir}.list`, archive.list, local.uri(db.name), db.name, () => (restored += 1));
      });
      // The archive is no longer needed; free its space for the next database.
      await rm(dir, { recursive: true, force: true });
      let vacuumed = 0;
      tables += await phase("vacuum", db.name, async () => {
        const t0 = performance.now();
        sample(async () => ({
          phase: "vacuum", detail: db.name, bytesDone: 0, bytesTotal: undefined,
          itemsDone: vacuumed, itemsTotal: archive.tables, itemUnit: "tables", phaseElapsedMs: performance.now() - t0,
        }));
        return local.vacuum(db.name, () => (vacuumed += 1));
      });
    }

    const control = await phase("stop", "fast shutdown", () => local.stop());
    cluster = undefined;
    const snapshot = await listSnapshotFiles(layout.pgdata, control.redoWalFile);
    bytes.pgdata = snapshot.totalBytes;
    await phase("upload", `${snapshot.files.length} files`, async () => {
      const t0 = performance.now();
      let filesDone = 0;
      sample(async () => ({
        phase: "upload", detail: target.prefix, bytesDone: bytes.uploaded, bytesTotal: snapshot.totalBytes,
        itemsDone: filesDone, itemsTotal: snapshot.files.length, itemUnit: "files", phaseElapsedMs: performance.now() - t0,
      }));
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

    const result: FastImportResult = {
      databases: catalog.databases.map((db) => db.name),
      roles,
      tables,
      files: snapshot.files.length,
      timingsMs: { ...timingsMs, total: Date.now() - startedAt.getTime() },
      bytes,
    };
    await phase("status", keys.pgdataStatus, async () => {
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
    clearInterval(sampler);
    const error = await explainFailure(current, thrown, cluster, options.workdir, signal);
    await cluster?.kill().catch(() => undefined);
    reporter.warn(`import failed in ${error.phase}: ${error.message}`, { phase: error.phase });
    const timings = { ...timingsMs, total: Date.now() - startedAt.getTime() };
    // Status first, so no reader ever takes the half-uploaded objects for a snapshot.
    await putJson(target.store, keys.pgdataStatus, { done: false, error: error.message, phase: error.phase }).catch(() => undefined);
    await target.store.deletePrefix(keys.pgdataPrefix).catch(() => undefined);
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
  const logLine = (await cluster?.logTail().catch(() => ""))?.split("\n").find((line) => /No space left on device/i.test(line));
  if (logLine) return new DiskFullError(phase, workdir, logLine.trim());
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

/** Total size of the files under `dir` (0 when it does not exist yet). */
async function treeBytes(dir: string): Promise<number> {
  let total = 0;
  const entries = await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => []);
  for (const entry of entries) {
    if (!entry.isFile()) continue;
    total += await stat(path.join(entry.parentPath, entry.name)).then((s) => s.size, () => 0);
  }
  return total;
}
