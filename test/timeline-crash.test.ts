import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { createInterface } from "node:readline";
import { setTimeout as delay } from "node:timers/promises";
import { execa } from "execa";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openBlobStore } from "../src/blob/index.js";
import { freePort } from "../src/net/free-port.js";
import { snapshotsPrefix } from "../src/timeline/index.js";
import { specJson, traversableTempDir } from "./computectl-fixtures.js";

const repo = path.resolve(import.meta.dirname, "..");
const rpoMs = 1_000;

/**
 * Proof 2 of issue 9: a primary under pgbench load loses its compute-ctl to
 * kill -9 (Postgres dies with it); a compute started elsewhere from the
 * store has every transaction committed more than the RPO before the kill,
 * and the data is consistent (pgbench's balances, amcheck on heap and indexes).
 */
describe("a timeline after kill -9 of compute-ctl under load", () => {
  let tmp: { dir: string; remove(): Promise<void> };
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    tmp = await traversableTempDir("pgmesh-timeline-crash-");
  });

  afterAll(async () => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    await Promise.all(children.filter((c) => c.exitCode === null && c.signalCode === null).map((c) => once(c, "exit")));
    await tmp.remove();
  });

  /** compute-ctl (from dist/) on the timeline; resolves with it and its Postgres URI once the compute runs. */
  async function startComputeCtl(name: string, timelineId = "crash"): Promise<{ child: ChildProcess; uri: string }> {
    const port = await freePort();
    const specFile = path.join(tmp.dir, `${name}.json`);
    await writeFile(specFile, JSON.stringify(specJson({
      tenant_id: "tenant1", timeline_id: timelineId,
      pgmesh: { base_data: { source: "timeline", storage: `file://${path.join(tmp.dir, "store")}` }, port },
    })));
    const child = spawn(process.execPath, [
      path.join(repo, "dist", "cmd", "compute-ctl.js"), "-D", path.join(tmp.dir, name, "pgdata"), "-S", specFile,
      "-b", "/usr/lib/postgresql/15/bin/postgres", "--listen", "127.0.0.1:0", "--insecure-no-auth", "--no-extensions",
      "--log-level", "info", "--rpo-ms", String(rpoMs), "-i", name,
    ], { stdio: ["ignore", "pipe", "inherit"] });
    children.push(child);
    await new Promise<void>((resolve, reject) => {
      createInterface({ input: child.stdout! }).on("line", (text) => {
        const line = JSON.parse(text) as { msg?: string; state?: string; error?: string };
        if (line.msg === "compute state changed" && line.state === "running") resolve();
        if (line.msg === "compute state changed" && line.state === "failed") reject(new Error(line.error));
      });
      child.once("exit", (code, signal) => reject(new Error(`compute-ctl exited (code ${code}, signal ${signal})`)));
    });
    return { child, uri: `postgresql://cloud_admin@127.0.0.1:${port}/postgres` };
  }

  it("keeps every transaction committed more than the RPO before the kill, consistent", async () => {
    const first = await startComputeCtl("node-a");
    await execa("pgbench", ["-i", "-s", "2", "-q", first.uri]);
    const client = new pg.Client({ connectionString: first.uri });
    await client.connect();
    client.on("error", () => undefined);
    await client.query("CREATE TABLE commits (id int PRIMARY KEY, at timestamptz DEFAULT now())");
    const bench = execa("pgbench", ["-c", "4", "-j", "2", "-T", "120", "-R", "300", "-n", first.uri], { reject: false });

    // Commits, each with the client-side time its COMMIT returned.
    const committedAt = new Map<number, number>();
    let writing = true;
    const writer = (async () => {
      for (let id = 1; writing; id++) {
        try {
          await client.query("INSERT INTO commits (id) VALUES ($1)", [id]);
          committedAt.set(id, Date.now());
        } catch {
          return;
        }
      }
    })();
    await delay(8_000);
    const killedAt = Date.now();
    first.child.kill("SIGKILL");
    await once(first.child, "exit");
    writing = false;
    await writer;
    await bench;
    await client.end().catch(() => undefined);

    const second = await startComputeCtl("node-b");
    const check = new pg.Client({ connectionString: second.uri });
    await check.connect();
    try {
      const present = new Set((await check.query<{ id: number }>("SELECT id FROM commits")).rows.map((r) => r.id));
      const due = [...committedAt].filter(([, at]) => at < killedAt - rpoMs).map(([id]) => id);
      expect(due.length).toBeGreaterThan(100);
      expect(due.filter((id) => !present.has(id))).toEqual([]);

      // pgbench's invariant: every balance change is in the history, once.
      const { rows: [sums] } = await check.query(`SELECT
        (SELECT sum(abalance) FROM pgbench_accounts)::bigint AS accounts, (SELECT sum(tbalance) FROM pgbench_tellers)::bigint AS tellers,
        (SELECT sum(bbalance) FROM pgbench_branches)::bigint AS branches, (SELECT sum(delta) FROM pgbench_history)::bigint AS history,
        (SELECT count(*) FROM pgbench_history)::int AS transactions`);
      expect(sums.transactions).toBeGreaterThan(0);
      expect([sums.accounts, sums.tellers, sums.branches]).toEqual([sums.history, sums.history, sums.history]);

      await check.query("CREATE EXTENSION amcheck");
      const { rows: heapProblems } = await check.query(`SELECT c.relname, v.* FROM pg_class c, verify_heapam(c.oid) v
        WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace`);
      expect(heapProblems).toEqual([]);
      const { rows: indexes } = await check.query(`SELECT c.relname, bt_index_check(c.oid, true) IS NULL AS checked FROM pg_class c
        JOIN pg_am am ON am.oid = c.relam WHERE am.amname = 'btree' AND c.relkind = 'i' AND c.relnamespace = 'public'::regnamespace`);
      expect(indexes.map((r) => r.relname).sort()).toEqual(["commits_pkey", "pgbench_accounts_pkey", "pgbench_branches_pkey", "pgbench_tellers_pkey"]);
    } finally {
      await check.end();
    }
    second.child.kill("SIGTERM");
    const [code] = await once(second.child, "exit");
    expect(code).toBe(0);
  });

  it("keeps the previous snapshot the usable one when compute-ctl is killed -9 while uploading a snapshot", async () => {
    const store = await openBlobStore(`file://${path.join(tmp.dir, "store")}`);
    const keysUnder = async (prefix: string): Promise<string[]> => {
      const keys: string[] = [];
      for await (const info of store.listAll(prefix)) keys.push(info.key);
      return keys;
    };
    try {
      const first = await startComputeCtl("node-c", "snapshot-crash");
      const client = new pg.Client({ connectionString: first.uri });
      await client.connect();
      // About 90 MB of new relation data: the shutdown snapshot has many chunks to put.
      await client.query("CREATE TABLE big AS SELECT g AS id, repeat(md5(g::text), 8) AS v FROM generate_series(1, 300000) g");
      await client.end();
      const snapshotsBefore = await keysUnder(snapshotsPrefix({ tenantId: "tenant1", timelineId: "snapshot-crash" }));
      const chunksBefore = (await keysUnder("tenants/tenant1/files/")).length;

      // SIGTERM: fast shutdown, WAL to the shutdown checkpoint shipped, then the snapshot's chunks go up.
      first.child.kill("SIGTERM");
      while ((await keysUnder("tenants/tenant1/files/")).length === chunksBefore) {
        expect(first.child.exitCode).toBeNull();
        await delay(5);
      }
      first.child.kill("SIGKILL");
      await once(first.child, "exit");
      expect(await keysUnder(snapshotsPrefix({ tenantId: "tenant1", timelineId: "snapshot-crash" }))).toEqual(snapshotsBefore);

      const second = await startComputeCtl("node-d", "snapshot-crash");
      const check = new pg.Client({ connectionString: second.uri });
      await check.connect();
      try {
        expect((await check.query("SELECT count(*)::int AS n, sum(id)::bigint AS s FROM big")).rows).toEqual([{ n: 300000, s: "45000150000" }]);
      } finally {
        await check.end();
      }
      second.child.kill("SIGTERM");
      const [code] = await once(second.child, "exit");
      expect(code).toBe(0);
    } finally {
      await store.close();
    }
  });
});
