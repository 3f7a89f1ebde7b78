/**
 * compute-ctl on timelines beyond one primary, real Postgres and a local
 * store: Neon's mode Static and Replica, and branches and point-in-time
 * starts named by the spec's base_data.ancestor.
 */
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { openBlobStore } from "../src/blob/index.js";
import { parseComputeSpec, SpecError, type Compute } from "../src/computectl/index.js";
import { resolveHistory } from "../src/timeline/index.js";
import { formatLsn, parseLsn } from "../src/wal/index.js";
import { computeSql, newCompute, specJson, traversableTempDir } from "./computectl-fixtures.js";

const tenantId = "tenant1";

describe("compute-ctl modes and branches on a timeline", () => {
  let tmp: { dir: string; remove(): Promise<void> };
  let storage: string;
  let primary: Compute;
  /** After the commit of id 1, before id 2; and a time between them. */
  let between: string;
  let betweenTime: string;
  const computes: Compute[] = [];

  function timelineSpec(timelineId: string, extra: { mode?: unknown; ancestor?: unknown } = {}) {
    return parseComputeSpec(specJson({
      tenant_id: tenantId, timeline_id: timelineId,
      ...(extra.mode === undefined ? {} : { mode: extra.mode }),
      pgmesh: { base_data: { source: "timeline", storage, ...(extra.ancestor === undefined ? {} : { ancestor: extra.ancestor }) } },
    }));
  }

  async function start(dir: string, timelineId: string, extra: { mode?: unknown; ancestor?: unknown } = {}): Promise<Compute> {
    const compute = newCompute(path.join(tmp.dir, dir), { templateRoot: path.join(tmp.dir, "templates"), rpoMs: 200 });
    computes.push(compute);
    compute.begin("127.0.0.1:1");
    await compute.configure(timelineSpec(timelineId, extra));
    return compute;
  }

  const ids = async (compute: Compute): Promise<number[]> => (await computeSql<{ id: number }>(compute, "SELECT id FROM t ORDER BY id")).map((r) => r.id);

  async function waitUntilDurable(lsn: bigint): Promise<void> {
    const store = await openBlobStore(storage);
    try {
      await vi.waitFor(async () => expect((await resolveHistory(store, { tenantId, timelineId: "main" })).durableEnd >= lsn).toBe(true), { timeout: 30_000, interval: 50 });
    } finally {
      await store.close();
    }
  }

  beforeAll(async () => {
    tmp = await traversableTempDir("pgmesh-timeline-modes-");
    storage = `file://${path.join(tmp.dir, "store")}`;
    primary = await start("primary", "main");
    await primary.waitUntilRunning();
    await computeSql(primary, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)");
    const [mid] = await computeSql<{ lsn: string; time: Date }>(primary,
      "SELECT pg_sleep(0.01), pg_current_wal_insert_lsn()::text AS lsn, clock_timestamp() AS time, pg_sleep(0.01)");
    between = mid!.lsn;
    betweenTime = mid!.time.toISOString();
    await computeSql(primary, "INSERT INTO t VALUES (2)");
    await waitUntilDurable(parseLsn((await computeSql<{ lsn: string }>(primary, "SELECT pg_current_wal_flush_lsn()::text AS lsn"))[0]!.lsn));
  }, 120_000);

  afterAll(async () => {
    for (const c of computes) await c.shutdown();
    await tmp?.remove();
  });

  it("Static at an LSN is a read-only hot standby with the data as of that LSN, and refuses writes", async () => {
    const compute = await start("static", "main", { mode: { Static: between } });
    await compute.waitUntilRunning();
    expect(await ids(compute)).toEqual([1]);
    expect(await computeSql(compute, "SELECT pg_is_in_recovery() AS r")).toEqual([{ r: true }]);
    await expect(computeSql(compute, "INSERT INTO t VALUES (9)")).rejects.toThrow(/read-only transaction/);
    await compute.terminate("fast");
    // The primary was neither fenced nor stopped.
    expect(primary.status().state).toBe("running");
  });

  it("Replica follows the primary: it sees a row the primary commits within a few seconds", async () => {
    const replica = await start("replica", "main", { mode: "Replica" });
    await replica.waitUntilRunning();
    expect(await ids(replica)).toEqual([1, 2]);
    await computeSql(primary, "INSERT INTO t VALUES (3)");
    await vi.waitFor(async () => expect(await ids(replica)).toEqual([1, 2, 3]), { timeout: 10_000, interval: 100 });
    await expect(computeSql(replica, "INSERT INTO t VALUES (9)")).rejects.toThrow(/read-only transaction/);
    await replica.terminate("fast");
  });

  it("a timeline the spec branches off at an LSN starts with the ancestor's data as of that LSN; its writes stay off the ancestor", async () => {
    const child = await start("branch", "child", { ancestor: { timeline_id: "main", lsn: between } });
    await child.waitUntilRunning();
    expect(await ids(child)).toEqual([1]);
    await computeSql(child, "INSERT INTO t VALUES (50)");
    expect(await ids(child)).toEqual([1, 50]);
    expect((await ids(primary)).includes(50)).toBe(false);
    await child.terminate("fast");
  });

  it("a point-in-time start by time sees the commits made by then and none after", async () => {
    const pitr = await start("pitr", "pitr", { ancestor: { timeline_id: "main", time: betweenTime } });
    await pitr.waitUntilRunning();
    expect(await ids(pitr)).toEqual([1]);
    await pitr.terminate("fast");
  });

  it("fails the start, naming the timeline and its object, when the ancestor does not exist", async () => {
    const compute = await start("no-ancestor", "orphan", { ancestor: { timeline_id: "no-such", lsn: between } });
    const failed = await compute.state.waitFor((s) => s.state === "failed");
    expect(failed.error).toMatch(/timeline tenant1\/no-such: .*does not exist.*tenants\/tenant1\/timelines\/no-such\/timeline\.json/);
  });

  it("fails the start when the ancestor LSN is in the future (after its durable end)", async () => {
    const compute = await start("future", "future", { ancestor: { timeline_id: "main", lsn: "F/0" } });
    const failed = await compute.state.waitFor((s) => s.state === "failed");
    expect(failed.error).toMatch(/lsn F\/00000000 is after the end of its durable WAL/);
  });

  it("fails a Static start at an LSN before the timeline's oldest snapshot", async () => {
    const compute = await start("static-old", "main", { mode: { Static: "0/10" } });
    const failed = await compute.state.waitFor((s) => s.state === "failed");
    expect(failed.error).toMatch(new RegExp(`lsn ${formatLsn(0x10n).replace("/", "\\/")} is before .*the oldest point a start can use`));
  });
});

describe("compute spec mode", () => {
  it("reads Neon's ComputeMode: Primary by default, Replica, {Static: lsn}", () => {
    expect(parseComputeSpec(specJson()).mode).toEqual({ kind: "primary" });
    const onTimeline = { pgmesh: { base_data: { source: "timeline", storage: "file:///tmp/x" } } };
    expect(parseComputeSpec(specJson({ ...onTimeline, mode: "Replica" })).mode).toEqual({ kind: "replica" });
    expect(parseComputeSpec(specJson({ ...onTimeline, mode: { Static: "0/16B5BA8" } })).mode).toEqual({ kind: "static", lsn: 0x16b5ba8n });
  });

  it("refuses a mode that is not Neon's, a Static LSN that is not X/Y, and Static without a timeline", () => {
    const onTimeline = { pgmesh: { base_data: { source: "timeline", storage: "file:///tmp/x" } } };
    expect(() => parseComputeSpec(specJson({ ...onTimeline, mode: "Secondary" }))).toThrow(SpecError);
    expect(() => parseComputeSpec(specJson({ ...onTimeline, mode: { Static: "16" } }))).toThrow(/mode\.Static: must be an LSN "X\/Y"/);
    expect(() => parseComputeSpec(specJson({ mode: "Replica" }))).toThrow(/mode: Static and Replica computes read a durable timeline/);
  });

  it("refuses an ancestor with both lsn and time", () => {
    expect(() => parseComputeSpec(specJson({ pgmesh: { base_data: { source: "timeline", storage: "file:///tmp/x", ancestor: { timeline_id: "a", lsn: "0/1", time: "2026-01-01T00:00:00Z" } } } })))
      .toThrow(/pgmesh\.base_data\.ancestor: names both "lsn" and "time"/);
  });
});
