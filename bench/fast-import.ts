/**
 * fast-import against its baseline, in one process on one machine:
 *   baseline:    bare `pg_dump -Fd -j N` then `pg_restore -j N` into a local
 *                Postgres already started with the same bulk-load settings;
 *   fast-import: the whole import (initdb, start, dump, restore, VACUUM
 *                FREEZE ANALYZE, clean stop, upload to a file:// store,
 *                status objects).
 * Source: pgbench at --scale (default 20, about 300 MB). Prints both times,
 * MB/s of the source size, and the ratio.
 *
 *   node dist/bench/fast-import.js [--scale 20] [--jobs 2]
 */
import { chmod, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { execa } from "execa";
import { pino } from "pino";
import { openBlobStore } from "../src/blob/index.js";
import { bulkLoadSettings, formatBytes, LogReporter, runFastImport } from "../src/fastimport/index.js";
import { freePort } from "../src/net/free-port.js";
import { initdb, pgProgram, startPostgres } from "../src/pg/index.js";
import { adminPassword, binaries, pgbenchInit, queryAll, startSourceServer } from "../test/fast-import-fixtures.js";

const { values } = parseArgs({ options: { scale: { type: "string", default: "20" }, jobs: { type: "string", default: "2" }, "memory-mb": { type: "string", default: "2048" } } });
const scale = Number(values.scale);
const jobs = Number(values.jobs);
const memoryMb = Number(values["memory-mb"]);

const root = await mkdtemp(path.join(os.tmpdir(), "pgmesh-bench-fast-import-"));
await chmod(root, 0o755);
const source = await startSourceServer(root, { shared_buffers: "256MB", max_wal_size: "4GB", checkpoint_timeout: "1h" });
try {
  const t0 = performance.now();
  await source.query("postgres", "create database bench");
  await pgbenchInit(source, "bench", scale);
  const [{ size }] = (await source.query<{ size: string }>("bench", "select pg_database_size('bench') as size")) as [{ size: string }];
  const sourceBytes = Number(size);
  console.log(`source: pgbench scale ${scale}, ${formatBytes(sourceBytes)} (built in ${((performance.now() - t0) / 1000).toFixed(1)} s); jobs ${jobs}, memory ${memoryMb} MiB, ${os.availableParallelism()} CPUs`);

  // Baseline: a tuned local server, then bare pg_dump -Fd -j N and pg_restore -j N.
  const baseDir = path.join(root, "baseline");
  await initdb({ binaries, dataDir: baseDir, user: source.user, extraArgs: ["--no-sync"] });
  const local = await startPostgres({
    binaries, user: source.user, dataDir: baseDir, port: await freePort(),
    socketDir: path.join(root, "baseline-run"), logFile: path.join(root, "baseline.log"),
    settings: bulkLoadSettings(memoryMb, jobs),
  });
  let baselineMs: number;
  try {
    await queryAll(local.connectionUri("postgres"), "create database bench");
    const dumpDir = path.join(root, "baseline-dump");
    const b0 = performance.now();
    await execa(pgProgram(binaries, "pg_dump"), ["-Fd", "-j", String(jobs), "-f", dumpDir, `--dbname=postgresql://cloud_admin@127.0.0.1:${source.postgres.port}/bench`], { env: { PGPASSWORD: adminPassword } });
    await execa(pgProgram(binaries, "pg_restore"), ["-j", String(jobs), `--dbname=${local.connectionUri("bench")}`, dumpDir]);
    baselineMs = performance.now() - b0;
    await rm(dumpDir, { recursive: true, force: true });
  } finally {
    await local.stop("fast");
    await rm(baseDir, { recursive: true, force: true });
  }

  // fast-import: the whole thing, into a local-directory store.
  const store = await openBlobStore(`file://${root}/store`);
  const f0 = performance.now();
  const result = await runFastImport(
    { store, prefix: "bench" },
    { source: source.uri("bench"), workdir: path.join(root, "work"), jobs, memoryMb },
    new LogReporter(pino({ level: "warn" })),
  );
  const importMs = performance.now() - f0;
  await store.close();

  const mbps = (ms: number) => `${(sourceBytes / 1e6 / (ms / 1000)).toFixed(1)} MB/s`;
  console.log(`baseline    pg_dump -Fd -j ${jobs} + pg_restore -j ${jobs}: ${(baselineMs / 1000).toFixed(1)} s, ${mbps(baselineMs)}`);
  console.log(`fast-import whole import + upload:            ${(importMs / 1000).toFixed(1)} s, ${mbps(importMs)}`);
  console.log(`  phases (ms): ${JSON.stringify(result.timingsMs)}`);
  console.log(`  snapshot: ${result.files} files, ${formatBytes(result.bytes.pgdata)}; dump ${formatBytes(result.bytes.dump)}; ${result.tables} tables`);
  console.log(`ratio: fast-import takes ${(importMs / baselineMs).toFixed(2)}x the baseline's time (dump+restore alone: ${(((result.timingsMs.dump ?? 0) + (result.timingsMs.restore ?? 0)) / baselineMs).toFixed(2)}x)`);
} finally {
  await source.stop();
  await rm(root, { recursive: true, force: true });
}
