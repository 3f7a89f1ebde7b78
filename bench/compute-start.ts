/**
 * compute-ctl start-up against its baseline, in one process on one machine:
 *   baseline:    lay down the same PGDATA (copy of the initdb template),
 *                `pg_ctl start -w`, one query;
 *   compute-ctl: spec to first successful query through compute-ctl: fresh
 *                PGDATA from the template, Epufs archive, control files of 20
 *                extensions in the index and the download of the 2 in
 *                shared_preload_libraries, postgresql.conf, Postgres as the
 *                unprivileged user, one role reconciled, then the query;
 *                "cold" with the spec given at start (-S), "pooled" with
 *                compute-ctl waiting in configuration_pending (PGDATA laid
 *                down ahead, as Neon's pooled computes) when Configure comes.
 * Before each round the 20 extensions' files are removed from the (private)
 * Postgres install, so the preload bundles are downloaded every time. Prints the median of each phase, both
 * totals and their ratio. Neon's local reference: total ≈ 63 ms, Postgres
 * start ≈ 18 ms.
 *
 *   node dist/bench/compute-start.js [--rounds 5]
 */
import { copyFile, mkdir, readdir, rm } from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";
import { createClient } from "@connectrpc/connect";
import { execa } from "execa";
import pg from "pg";
import { EpufsService } from "../gen/pgmesh/epufs/v1/epufs_pb.js";
import { openBlobStore } from "../src/blob/index.js";
import {
  buildDemoSpec,
  ensureInitdbTemplate,
  parseComputeSpecJson,
  RemoteExtensionLoader,
  runComputeCtl,
  startupPhases,
  type StartupPhase,
} from "../src/computectl/index.js";
import { compileEpufsOptions, Epufs, epufsServerParts } from "../src/epufs/index.js";
import { freePort } from "../src/net/free-port.js";
import { chownTree, pgProgram, resolveUnprivilegedUser, runAsPrefix, systemPgBinaries } from "../src/pg/index.js";
import { createClientTransport, startServer } from "../src/server/index.js";
import { silentLogger, traversableTempDir } from "../test/computectl-fixtures.js";
import {
  buildComputeHookInto,
  createScratchInstall,
  packContribBundle,
  startTestExtensionStore,
  type ScratchInstall,
} from "../test/helpers/compute-extensions-fixtures.js";
import { createTestKeys } from "../test/helpers/test-keys.js";

const { values } = parseArgs({ options: { rounds: { type: "string", default: "5" } } });
const rounds = Number(values.rounds);

const extensions = [
  "hstore", "pg_trgm", "pgcrypto", "citext", "cube", "seg", "isn", "ltree", "btree_gin", "btree_gist",
  "fuzzystrmatch", "unaccent", "tablefunc", "pg_prewarm", "pgrowlocks", "pgstattuple", "pg_buffercache", "bloom", "dblink", "pg_visibility",
];
const preloaded = ["pg_prewarm", "pg_buffercache"];
const ids = { tenantId: "bench-tenant", timelineId: "bench-timeline", endpointId: "bench-endpoint" };

const tmp = await traversableTempDir("pgmesh-bench-compute-start-");
const user = await resolveUnprivilegedUser();
const store = await startTestExtensionStore();
const keys = await createTestKeys();
const epufsAuth = { verifier: keys.verifier };
const epufsServer = await startServer({
  port: 0, auth: epufsAuth, logger: silentLogger,
  ...epufsServerParts(new Epufs(await openBlobStore(`file://${path.join(tmp.dir, "epufs")}`), compileEpufsOptions()), epufsAuth),
});
const computeToken = await keys.computeToken(ids.tenantId, ids.timelineId, ids.endpointId);

let install: ScratchInstall | undefined;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

try {
  for (const name of extensions) await store.publishApproved(await packContribBundle(name));
  const { remoteExtensionsJson } = await store.harness.controlPlane.exportRemoteExtensions({ tenantId: ids.tenantId, pgMajor: 15 });
  const remote = await store.remoteExtensions(ids.tenantId);
  const downloadToken = await store.downloadToken(ids.tenantId, ids.endpointId, remote);
  // Saved files to restore: a pg_stat_statements dump left by an earlier compute of this endpoint is a few KiB; any bytes will do here.
  const epufs = createClient(EpufsService, createClientTransport({ baseUrl: epufsServer.url, token: computeToken }));
  await epufs.putFile((async function* () {
    yield { msg: { case: "header" as const, value: { endpoint: ids, path: "autoprewarm.blocks" } } };
    yield { msg: { case: "chunk" as const, value: Buffer.from("<<0>>\n") } };
  })());
  const spec = JSON.stringify({
    ...buildDemoSpec({
      ...ids, password: "bench",
      endpointStorage: { addr: `127.0.0.1:${epufsServer.address.port}`, token: computeToken },
      extensionStore: { addr: store.addr, downloadToken },
      remoteExtensionsJson,
      sharedPreloadLibraries: preloaded,
    }),
    // One role, no database to create: a restart of an existing endpoint, as Neon measures it.
    cluster: { ...(buildDemoSpec({ ...ids, password: "bench" }).cluster as object), databases: [] },
  });

  type Phases = Record<StartupPhase | "first_query", number>;
  const results: Record<"cold" | "pooled", Phases[]> = { cold: [], pooled: [] };
  const baseline: { layDown: number; pgCtlStart: number; query: number; total: number }[] = [];
  const templateRoot = path.join(tmp.dir, "templates");
  install = await createScratchInstall(extensions);
  await copyFile(pgProgram(systemPgBinaries(15), "initdb"), path.join(install.binaries.binDir, "initdb"));
  await buildComputeHookInto(install);
  const resetExtensions = async () => {
    for (const name of extensions) await rm(path.join(install!.dirs.pkglibdir, `${name}.so`), { force: true });
    const extensionDir = path.join(install!.dirs.sharedir, "extension");
    for (const file of await readdir(extensionDir)) {
      if (extensions.some((name) => file.startsWith(`${name}.`) || file.startsWith(`${name}--`))) await rm(path.join(extensionDir, file));
    }
  };
  /**
   * Spec to first successful query. "cold": the spec is given at start (-S), nothing was prepared;
   * "pooled": compute-ctl waited in configuration_pending (PGDATA laid down ahead) when Configure came.
   */
  const computeToFirstQuery = async (round: number, mode: "cold" | "pooled"): Promise<Phases> => {
    await resetExtensions();
    const loader = new RemoteExtensionLoader({ binaries: install!.binaries, dirs: install!.dirs, logger: silentLogger });
    const options = {
      pgdata: path.join(tmp.dir, `compute-${mode}-${round}`, "pgdata"), binaries: install!.binaries, templateRoot,
      port: 0, auth: { insecure: true as const }, logger: silentLogger, extensions: loader,
    };
    let t0 = performance.now();
    const handle = mode === "cold" ? await runComputeCtl({ ...options, spec: parseComputeSpecJson(spec) }) : await runComputeCtl(options);
    if (mode === "pooled") {
      await handle.compute.warmedUp();
      t0 = performance.now();
      await handle.compute.configure(parseComputeSpecJson(spec));
    }
    const status = await handle.compute.waitUntilRunning();
    const uri = new URL(status.connectionUri);
    const tq = performance.now();
    const client = new pg.Client({ host: uri.hostname, port: Number(uri.port), user: "demo", password: "bench", database: "postgres" });
    await client.connect();
    await client.query("SELECT 1");
    const t1 = performance.now();
    await client.end();
    const timings = handle.compute.timings;
    // Let the background downloads of the other 18 finish: a quiet machine for the next run.
    await loader.backgroundDone();
    await handle.close();
    return {
      wait_for_spec: timings.waitForSpecMs, base_data: timings.baseDataMs, saved_files: timings.savedFilesMs, extensions: timings.extensionsMs,
      start_postgres: timings.startPostgresMs, config: timings.configMs, first_query: Math.round(t1 - tq),
      // Spec to first successful query (compute-ctl's own total_ms stops at "running").
      total: Math.round(t1 - t0),
    };
  };
  for (let round = -1; round < rounds; round++) {
    // Round -1 warms the initdb template and the page cache; it is not counted.
    const cold = await computeToFirstQuery(round, "cold");
    const pooled = await computeToFirstQuery(round, "pooled");

    const template = await ensureInitdbTemplate({ binaries: install.binaries, user, templateRoot });
    const pgdata = path.join(tmp.dir, `baseline-${round}`, "pgdata");
    const socketDir = path.join(tmp.dir, `baseline-${round}`, "sock");
    const port = await freePort();
    const b0 = performance.now();
    await mkdir(path.dirname(pgdata), { recursive: true, mode: 0o755 });
    await execa("cp", ["-a", template, pgdata]);
    const b1 = performance.now();
    await mkdir(socketDir);
    await chownTree(socketDir, user);
    const prefix = runAsPrefix(user);
    const pgCtl = pgProgram(systemPgBinaries(15), "pg_ctl");
    await execa(prefix[0]!, [...prefix.slice(1), pgCtl, "start", "-w", "-D", pgdata, "-l", path.join(pgdata, "startup.log"), "-o", `-p ${port} -k ${socketDir} -c listen_addresses=127.0.0.1`]);
    const b2 = performance.now();
    const bare = new pg.Client({ host: "127.0.0.1", port, user: "cloud_admin", database: "postgres" });
    await bare.connect();
    await bare.query("SELECT 1");
    const b3 = performance.now();
    await bare.end();
    await execa(prefix[0]!, [...prefix.slice(1), pgCtl, "stop", "-m", "immediate", "-D", pgdata]);

    if (round < 0) continue;
    results.cold.push(cold);
    results.pooled.push(pooled);
    baseline.push({ layDown: b1 - b0, pgCtlStart: b2 - b1, query: b3 - b2, total: b3 - b0 });
    console.log(`round ${round + 1}/${rounds}: compute-ctl cold ${cold.total} ms, pooled ${pooled.total} ms; baseline ${Math.round(b3 - b0)} ms`);
  }

  const phases = [...startupPhases.filter((p) => p !== "wait_for_spec" && p !== "total"), "first_query"] as const;
  for (const mode of ["cold", "pooled"] as const) {
    console.log(`\ncompute-ctl ${mode === "cold" ? "cold (spec at start, -S)" : "pooled (waited in configuration_pending)"}, spec to first query, median of ${rounds}:`);
    for (const phase of phases) console.log(`  ${phase.padEnd(16)} ${median(results[mode].map((c) => c[phase])).toFixed(0).padStart(6)} ms`);
    console.log(`  ${"total".padEnd(16)} ${median(results[mode].map((c) => c.total)).toFixed(0).padStart(6)} ms`);
  }
  console.log(`(${extensions.length} extensions in the index, ${preloaded.join(" and ")} in shared_preload_libraries; Neon's reference: ≈ 63 ms total, ≈ 18 ms Postgres start)`);
  console.log(`\nbaseline, cp -a PGDATA + pg_ctl start -w + one query (median of ${rounds}):`);
  console.log(`  ${"lay_down".padEnd(16)} ${median(baseline.map((b) => b.layDown)).toFixed(0).padStart(6)} ms`);
  console.log(`  ${"pg_ctl_start".padEnd(16)} ${median(baseline.map((b) => b.pgCtlStart)).toFixed(0).padStart(6)} ms`);
  console.log(`  ${"first_query".padEnd(16)} ${median(baseline.map((b) => b.query)).toFixed(0).padStart(6)} ms`);
  const baselineTotal = median(baseline.map((b) => b.total));
  console.log(`  ${"total".padEnd(16)} ${baselineTotal.toFixed(0).padStart(6)} ms`);
  for (const mode of ["cold", "pooled"] as const) {
    console.log(`ratio compute-ctl ${mode} / baseline: ${(median(results[mode].map((c) => c.total)) / baselineTotal).toFixed(2)}x`);
  }
} finally {
  await install?.remove();
  await epufsServer.close();
  await store.stop();
  await keys.remove();
  await rm(tmp.dir, { recursive: true, force: true });
}
