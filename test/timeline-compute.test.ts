import { readdir, rename, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openBlobStore } from "../src/blob/index.js";
import type { Compute } from "../src/computectl/index.js";
import { freePort } from "../src/net/free-port.js";
import { listSnapshots, listWalChunks, planRestore, readSnapshotManifest, resolveHistory } from "../src/timeline/index.js";
import { parseLsn } from "../src/wal/index.js";
import { computeSql as sql, newCompute, spec, traversableTempDir } from "./computectl-fixtures.js";
import { startS3rver, type S3rverHandle } from "./helpers/s3rver.js";

describe("Compute on a timeline", () => {
  let tmp: { dir: string; remove(): Promise<void> };
  let s3: S3rverHandle;
  let fileStore: string;
  const computes: Compute[] = [];
  let timelines = 0;

  beforeAll(async () => {
    tmp = await traversableTempDir("pgmesh-timeline-compute-");
    fileStore = `file://${path.join(tmp.dir, "store")}`;
    s3 = await startS3rver();
  });

  afterAll(async () => {
    for (const c of computes) await c.shutdown();
    await s3?.stop();
    await tmp?.remove();
  });

  const backends = [
    { name: "a local directory", url: () => fileStore },
    { name: "S3 (s3rver)", url: () => s3.url("durable") },
  ];

  function timelineSpec(storage: string, timelineId: string): ReturnType<typeof spec> {
    return spec({ tenant_id: "tenant1", timeline_id: timelineId, pgmesh: { base_data: { source: "timeline", storage } } });
  }

  async function start(
    dir: string, storage: string, timelineId: string,
    options: { computeId?: string; snapshotWalBytes?: number; maxUnshippedWalBytes?: number } = {},
  ): Promise<Compute> {
    const compute = newCompute(path.join(tmp.dir, dir), {
      templateRoot: path.join(tmp.dir, "templates"), blobStoreOptions: s3.blobStoreOptions, rpoMs: 200,
      ...(options.snapshotWalBytes ? { snapshotWalBytes: options.snapshotWalBytes } : {}),
      ...(options.maxUnshippedWalBytes ? { maxUnshippedWalBytes: options.maxUnshippedWalBytes } : {}),
      ...(options.computeId ? { computeId: options.computeId } : {}),
    });
    computes.push(compute);
    compute.begin("127.0.0.1:1");
    await compute.configure(timelineSpec(storage, timelineId));
    return compute;
  }

  /** Waits until the timeline in the store is durable up to the compute's current WAL flush position. */
  async function waitUntilShipped(compute: Compute, timelineId: string, storage = fileStore): Promise<void> {
    const flushed = parseLsn((await sql<{ lsn: string }>(compute, "SELECT pg_current_wal_flush_lsn()::text AS lsn"))[0]!.lsn);
    const store = await openBlobStore(storage);
    try {
      while ((await resolveHistory(store, { tenantId: "tenant1", timelineId })).durableEnd < flushed) await delay(50);
    } finally {
      await store.close();
    }
  }

  it.each(backends)("keeps committed rows across a clean stop and a start with an empty PGDATA ($name)", async (backend) => {
    const timelineId = `clean-${++timelines}`;
    const first = await start(`clean-a-${timelines}`, backend.url(), timelineId);
    await first.waitUntilRunning();
    await sql(first, "CREATE TABLE keep_me AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 5000) g");
    const terminated = await first.terminate("fast");
    expect(terminated.state).toBe("terminated");

    const second = await start(`clean-b-${timelines}`, backend.url(), timelineId);
    await second.waitUntilRunning();
    expect(await sql(second, "SELECT count(*)::int AS n, sum(id)::int AS s FROM keep_me")).toEqual([{ n: 5000, s: 12502500 }]);
    await second.terminate("fast");
  });

  it("starts again on the node that still holds the PGDATA, taking the newer writes of another node", async () => {
    const timelineId = `delta-${++timelines}`;
    const a = await start("delta-node-a", fileStore, timelineId);
    await a.waitUntilRunning();
    await sql(a, "CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 100) g");
    await a.terminate("fast");
    const b = await start("delta-node-b", fileStore, timelineId);
    await b.waitUntilRunning();
    await sql(b, "INSERT INTO t SELECT g FROM generate_series(101, 200) g");
    await b.terminate("fast");
    // Node A's PGDATA is still there, with its cache of what it held: only what B changed moves.
    const again = await start("delta-node-a", fileStore, timelineId);
    await again.waitUntilRunning();
    expect(await sql(again, "SELECT count(*)::int AS n FROM t")).toEqual([{ n: 200 }]);
    await again.terminate("fast");
  });

  it("keeps the WAL a primary shipped before it crashed (Postgres killed), within the RPO", async () => {
    const timelineId = `crash-${++timelines}`;
    const a = await start("crash-a", fileStore, timelineId);
    await a.waitUntilRunning();
    await sql(a, "CREATE TABLE t (id int)");
    await sql(a, "INSERT INTO t SELECT generate_series(1, 1000)");
    await waitUntilShipped(a, timelineId);
    process.kill(a.postgres!.pid, "SIGKILL");
    await a.state.waitFor((s) => s.state === "failed");
    const b = await start("crash-b", fileStore, timelineId);
    await b.waitUntilRunning();
    expect(await sql(b, "SELECT count(*)::int AS n FROM t")).toEqual([{ n: 1000 }]);
    await b.terminate("fast");
  });

  it("takes an online snapshot once enough WAL was shipped, and a start after a crash restores from it", async () => {
    const timelineId = `online-${++timelines}`;
    const a = await start("online-a", fileStore, timelineId, { snapshotWalBytes: 1024 * 1024 });
    await a.waitUntilRunning();
    await sql(a, "CREATE TABLE t AS SELECT g AS id, repeat('x', 500) AS pad FROM generate_series(1, 10000) g");
    const store = await openBlobStore(fileStore);
    const ref = { tenantId: "tenant1", timelineId };
    const online = async () => {
      for (const snapshot of await listSnapshots(store, ref)) {
        if ((await readSnapshotManifest(store, snapshot)).kind === "online") return snapshot;
      }
      return undefined;
    };
    while (!(await online())) await delay(100);
    await sql(a, "INSERT INTO t SELECT g, 'after the snapshot' FROM generate_series(10001, 10010) g");
    await waitUntilShipped(a, timelineId);
    process.kill(a.postgres!.pid, "SIGKILL");
    await a.state.waitFor((s) => s.state === "failed");
    expect((await planRestore(store, ref))!.manifest.kind).toBe("online");
    await store.close();

    const b = await start("online-b", fileStore, timelineId);
    await b.waitUntilRunning();
    expect(await sql(b, "SELECT count(*)::int AS n, count(*) FILTER (WHERE pad = 'after the snapshot')::int AS after FROM t")).toEqual([{ n: 10010, after: 10 }]);
    await b.terminate("fast");
  });

  it("fences the older primary when a second one starts on the timeline: the older one's later commits are not kept", async () => {
    const timelineId = `fence-${++timelines}`;
    const a = await start("fence-a", fileStore, timelineId, { computeId: "compute-a" });
    await a.waitUntilRunning();
    await sql(a, "CREATE TABLE t (who text)");
    await sql(a, "INSERT INTO t VALUES ('a before b')");
    await waitUntilShipped(a, timelineId);

    const b = await start("fence-b", fileStore, timelineId, { computeId: "compute-b" });
    await b.waitUntilRunning();
    // A has not noticed yet, or has: either way its commit from now on must not survive.
    await sql(a, "INSERT INTO t VALUES ('a after b')").catch(() => undefined);
    const failed = await a.state.waitFor((s) => s.state === "failed");
    expect(failed.error).toContain("fenced: generation 2 (compute compute-b) took the timeline over");
    await sql(b, "INSERT INTO t VALUES ('b')");
    await b.terminate("fast");

    const c = await start("fence-c", fileStore, timelineId);
    await c.waitUntilRunning();
    expect((await sql<{ who: string }>(c, "SELECT who FROM t ORDER BY who")).map((r) => r.who)).toEqual(["a before b", "b"]);
    await c.terminate("fast");
  });

  it("lets two computes racing to start a new timeline never both keep their writes", async () => {
    const timelineId = `race-${++timelines}`;
    const [a, b] = await Promise.all([
      start("race-a", fileStore, timelineId, { computeId: "race-a" }),
      start("race-b", fileStore, timelineId, { computeId: "race-b" }),
    ]);
    const write = async (compute: Compute, who: string) => {
      const settled = await compute.state.waitFor((s) => s.state === "running" || s.state === "failed");
      if (settled.state !== "running") return;
      await sql(compute, `CREATE TABLE IF NOT EXISTS t (who text); INSERT INTO t VALUES ('${who}')`).catch(() => undefined);
    };
    await Promise.all([write(a, "a"), write(b, "b")]);
    // The older generation learns of the newer claim at its next ship and stops.
    if ([a, b].every((compute) => compute.state.state === "running")) {
      await Promise.race([a, b].map((compute) => compute.state.waitFor((s) => s.state === "failed")));
    }
    const survivors = [a, b].filter((compute) => compute.state.state === "running");
    expect(survivors).toHaveLength(1);
    const survivor = survivors[0] === a ? "a" : "b";
    await survivors[0]!.terminate("fast");

    const c = await start("race-c", fileStore, timelineId);
    await c.waitUntilRunning();
    expect(await sql<{ who: string }>(c, "SELECT who FROM t")).toEqual([{ who: survivor }]);
    await c.terminate("fast");
  });

  it("keeps running while the store is down, says so in its status, and ships the WAL once the store is back", async () => {
    const timelineId = `outage-${++timelines}`;
    const storeDir = path.join(tmp.dir, "outage-store");
    const storage = `file://${storeDir}`;
    const a = await start("outage-a", storage, timelineId);
    await a.waitUntilRunning();
    await sql(a, "CREATE TABLE t (id int)");
    // The store's directory replaced by a file: every put fails.
    await rename(storeDir, `${storeDir}.away`);
    await writeFile(storeDir, "");
    await sql(a, "INSERT INTO t SELECT generate_series(1, 100)");
    const warned = await a.state.waitFor((s) => s.error.includes("is behind"));
    expect(warned.state).toBe("running");
    expect(warned.error).toContain(`WAL shipping to timeline tenant1/${timelineId} is behind at`);
    await rm(storeDir);
    await rename(`${storeDir}.away`, storeDir);
    await waitUntilShipped(a, timelineId, storage);
    process.kill(a.postgres!.pid, "SIGKILL");
    await a.state.waitFor((s) => s.state === "failed");

    const b = await start("outage-b", storage, timelineId);
    await b.waitUntilRunning();
    expect(await sql(b, "SELECT count(*)::int AS n FROM t")).toEqual([{ n: 100 }]);
    await b.terminate("fast");
  });

  it("pauses writes while more WAL than --max-unshipped-wal-bytes waits for a store that is down, and resumes them once it is shipped", async () => {
    const timelineId = `backlog-${++timelines}`;
    const storeDir = path.join(tmp.dir, "backlog-store");
    const storage = `file://${storeDir}`;
    const a = await start("backlog-a", storage, timelineId, { maxUnshippedWalBytes: 256 * 1024 });
    await a.waitUntilRunning();
    await sql(a, "CREATE TABLE t (id int, v text)");
    await rename(storeDir, `${storeDir}.away`);
    await writeFile(storeDir, "");
    await sql(a, "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 20000) g");
    const paused = await a.state.waitFor((s) => s.error.includes("writes paused"));
    expect(paused.state).toBe("running");
    expect(paused.error).toMatch(/bytes of WAL are not in timeline tenant1\/backlog-\d+'s store yet, over the 262144-byte limit \(--max-unshipped-wal-bytes\)/);
    await expect(sql(a, "INSERT INTO t VALUES (0, 'refused')")).rejects.toThrow(/read-only transaction/);
    expect(await sql(a, "SELECT count(*)::int AS n FROM t")).toEqual([{ n: 20000 }]);

    await rm(storeDir);
    await rename(`${storeDir}.away`, storeDir);
    await waitUntilShipped(a, timelineId, storage);
    // The shipper's next poll sees no backlog and lifts the pause; reload reaches new sessions at once.
    for (let attempt = 0; ; attempt += 1) {
      const inserted = await sql(a, "INSERT INTO t VALUES (20001, 'after')").then(() => true, () => false);
      if (inserted) break;
      expect(attempt).toBeLessThan(200);
      await delay(50);
    }
    expect(await sql(a, "SELECT count(*)::int AS n FROM t")).toEqual([{ n: 20001 }]);
    await a.terminate("fast");
  });

  it("fails a start whose store is down with an error naming the timeline, and leaves no PGDATA", async () => {
    const dead = await freePort();
    const compute = newCompute(path.join(tmp.dir, "store-down"), {
      templateRoot: path.join(tmp.dir, "templates"),
      blobStoreOptions: { ...s3.blobStoreOptions, s3Endpoint: `http://127.0.0.1:${dead}` },
      spec: timelineSpec("s3://nowhere/durable", "down"),
    });
    computes.push(compute);
    compute.begin("127.0.0.1:1");
    await expect(compute.waitUntilRunning()).rejects.toThrow(/timeline tenant1\/down: .*could not open the store s3:\/\/nowhere\/durable.*ECONNREFUSED.*\(object tenants\/tenant1\/timelines\/down\/timeline\.json\)/s);
    await expect(stat(path.join(tmp.dir, "store-down", "pgdata"))).rejects.toThrow();
  });

  it("names the missing WAL chunk when a start cannot find it, and leaves no PGDATA", async () => {
    const timelineId = `missing-${++timelines}`;
    const a = await start("missing-a", fileStore, timelineId);
    await a.waitUntilRunning();
    await sql(a, "CREATE TABLE t AS SELECT generate_series(1, 10) AS id");
    await a.terminate("fast");
    const store = await openBlobStore(fileStore);
    const ref = { tenantId: "tenant1", timelineId };
    const chunks = await listWalChunks(store, ref);
    const last = chunks.at(-1)!;
    await store.put(last.key, (async function* () { yield Buffer.from("corrupt"); })());
    await store.close();
    const b = await start("missing-b", fileStore, timelineId);
    await expect(b.waitUntilRunning()).rejects.toThrow(last.key);
    expect(await readdir(path.join(tmp.dir, "missing-b")).then((names) => names.includes("pgdata"))).toBe(false);
  });
});
