/**
 * Branches and point-in-time starts on real PostgreSQL 15, through the
 * timeline library: a root timeline's base snapshot and shipped WAL in a
 * local store, branches created by the control plane, restored into fresh
 * PGDATA directories and started.
 */
import { chmod, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openBlobStore, type BlobStore } from "../src/blob/index.js";
import { initdb, resolveUnprivilegedUser, systemPgBinaries, type RunningPostgres } from "../src/pg/index.js";
import { bootstrapTimeline, claimNextGeneration, createTimelineMeta, resolveHistory, TimelineError, type TimelineRef } from "../src/timeline/index.js";
import { compileTimelineCtlOptions, TimelineCtl } from "../src/timelinectl/index.js";
import { formatLsn, lastRecordAtOrBelow, parseLsn } from "../src/wal/index.js";
import { queryRows, TimelinePostgres } from "./helpers/timeline-postgres.js";

const segmentBytes = 16 * 1024 * 1024;
const tenantId = "tenant1";
const main: TimelineRef = { tenantId, timelineId: "main" };
const binaries = systemPgBinaries(15);

let root: string;
let store: BlobStore;
let ctl: TimelineCtl;
let pgs: TimelinePostgres;
/** LSN after the first insert (id 2) and before the second (id 3); a time between them. */
let between: bigint;
let betweenTime: Date;

async function ids(postgres: RunningPostgres): Promise<number[]> {
  return (await queryRows<{ id: number }>(postgres, "select id from t order by id")).map((r) => r.id);
}

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), "pgmesh-branch-"));
  await chmod(root, 0o755);
  const user = await resolveUnprivilegedUser();
  store = await openBlobStore(pathToFileURL(path.join(root, "store")).href);
  pgs = new TimelinePostgres(root, store, user, segmentBytes);
  ctl = new TimelineCtl(store, compileTimelineCtlOptions());
  const dataDir = path.join(root, "main");
  await initdb({ binaries, dataDir, user, extraArgs: ["--no-sync"] });
  let postgres = await pgs.start(dataDir);
  await queryRows(postgres, "create table t (id int primary key); insert into t values (1)");
  await postgres.stop("fast");
  await createTimelineMeta(store, { ...main, pgMajor: 15, pgTli: 1, walSegmentBytes: segmentBytes, createdAt: new Date(), ancestor: null });
  await claimNextGeneration(store, main, "bootstrap");
  const { startLsn } = await bootstrapTimeline(store, main, 1, dataDir, { concurrency: 4, pgMajor: 15, pgTli: 1, segmentBytes });
  // The same generation writes on: two inserts with an LSN and a time between them.
  postgres = await pgs.start(dataDir);
  await queryRows(postgres, "insert into t values (2)");
  const [mid] = await queryRows<{ lsn: string; time: Date }>(postgres, "select pg_sleep(0.01), pg_current_wal_insert_lsn()::text as lsn, clock_timestamp() as time, pg_sleep(0.01)");
  between = parseLsn(mid!.lsn);
  betweenTime = mid!.time;
  await queryRows(postgres, "insert into t values (3)");
  await postgres.stop("fast");
  await pgs.shipUntilShutdown(main, 1, dataDir, startLsn);
});

afterAll(async () => {
  await store?.close();
  if (root) await rm(root, { recursive: true, force: true });
});

describe("Timeline branches on real PostgreSQL", () => {
  it("a branch at an LSN between two inserts sees the first and not the second, at a record boundary at or below the LSN", async () => {
    const child = await ctl.branch({ tenantId, timelineId: "at-lsn" }, "main", { lsn: between });
    expect(child.meta.ancestor!.lsn <= between).toBe(true);
    const history = await resolveHistory(store, main);
    const boundary = await lastRecordAtOrBelow({ walDir: path.join(root, "main", "pg_wal"), startLsn: history.snapshots[0]!.lsn, atOrBelow: between });
    expect(formatLsn(child.meta.ancestor!.lsn)).toBe(formatLsn(boundary!.endLsn));
    const { postgres } = await pgs.startTimeline({ tenantId, timelineId: "at-lsn" });
    try {
      expect(await ids(postgres)).toEqual([1, 2]);
    } finally {
      await postgres.stop("fast");
    }
  });

  it("writes on a branch are invisible to its ancestor, and stay on the branch", async () => {
    const ref = { tenantId, timelineId: "writer" };
    await ctl.branch(ref, "main", { lsn: between });
    const first = await pgs.startTimeline(ref);
    await queryRows(first.postgres, "insert into t values (99)");
    await first.postgres.stop("fast");
    await pgs.shipUntilShutdown(ref, first.generation, first.dataDir, first.startLsn);
    const parent = await pgs.startTimeline(main);
    const again = await pgs.startTimeline(ref);
    try {
      expect(await ids(parent.postgres)).toEqual([1, 2, 3]);
      expect(await ids(again.postgres)).toEqual([1, 2, 99]);
    } finally {
      await parent.postgres.stop("fast");
      await again.postgres.stop("fast");
    }
  });

  it("a point-in-time branch by time sees the commits made by then and none after", async () => {
    const ref = { tenantId, timelineId: "at-time" };
    await ctl.branch(ref, "main", { time: betweenTime });
    const { postgres } = await pgs.startTimeline(ref);
    try {
      expect(await ids(postgres)).toEqual([1, 2]);
    } finally {
      await postgres.stop("fast");
    }
  });
});

describe("Timeline branch faults", () => {
  async function refused(promise: Promise<unknown>, code: Code, text: RegExp): Promise<void> {
    const err = await promise.then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(TimelineError);
    expect((err as TimelineError).code).toBe(code);
    expect((err as TimelineError).message).toMatch(text);
  }

  it("refuses an ancestor that does not exist, naming it and its timeline.json", async () => {
    await refused(ctl.branch({ tenantId, timelineId: "orphan" }, "no-such", { latest: true }), Code.NotFound,
      /timeline tenant1\/no-such: .*does not exist.*tenants\/tenant1\/timelines\/no-such\/timeline\.json/);
  });

  it("refuses an LSN after the ancestor's durable end (in the future)", async () => {
    const { durableEnd } = await resolveHistory(store, main);
    await refused(ctl.branch({ tenantId, timelineId: "future" }, "main", { lsn: durableEnd + 0x1000n }), Code.OutOfRange,
      new RegExp(`after the end of its durable WAL, ${formatLsn(durableEnd)}`));
  });

  it("refuses an LSN before the ancestor's oldest snapshot", async () => {
    await refused(ctl.branch({ tenantId, timelineId: "past" }, "main", { lsn: 0x100n }), Code.OutOfRange, /before .*the oldest point a start can use/);
  });

  it("refuses a time in the future", async () => {
    await refused(ctl.branch({ tenantId, timelineId: "later" }, "main", { time: new Date(Date.now() + 3_600_000) }), Code.OutOfRange, /is in the future/);
  });

  it("refuses a branch whose timeline id exists", async () => {
    await refused(ctl.branch({ tenantId, timelineId: "main" }, "main", { latest: true }), Code.AlreadyExists, /already exists/);
  });

  it("refuses to delete a timeline while branches of it exist, naming them", async () => {
    await refused(ctl.delete(main), Code.FailedPrecondition, /branches .*at-lsn.* begin in it/);
  });

  it("lists the tenant's timelines with their ancestor and LSN range", async () => {
    const list = await ctl.list(tenantId);
    const byId = new Map(list.map((t) => [t.meta.timelineId, t]));
    expect(byId.get("main")!.meta.ancestor).toBeNull();
    expect(byId.get("at-lsn")!.meta.ancestor!.timelineId).toBe("main");
    expect(byId.get("at-lsn")!.durableEnd).toBe(byId.get("at-lsn")!.meta.ancestor!.lsn);
    expect(byId.get("main")!.startLsn! < byId.get("main")!.durableEnd).toBe(true);
  });
});
