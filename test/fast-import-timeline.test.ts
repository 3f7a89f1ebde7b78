import { chmod, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openBlobStore, type BlobStore } from "../src/blob/index.js";
import { runFastImport, TimelineExistsError } from "../src/fastimport/index.js";
import { resolveUnprivilegedUser } from "../src/pg/index.js";
import { resolveHistory, timelinePrefix, type TimelineRef } from "../src/timeline/index.js";
import { adminPassword, capturingReporter, startSourceServer, type SourceServer } from "./fast-import-fixtures.js";
import { queryRows, TimelinePostgres } from "./helpers/timeline-postgres.js";

const ref: TimelineRef = { tenantId: "tenant1", timelineId: "imported" };

describe("fast-import into a timeline", () => {
  let root: string;
  let source: SourceServer;
  let store: BlobStore;
  let pgs: TimelinePostgres;

  beforeAll(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), "pgmesh-import-timeline-"));
    await chmod(root, 0o755);
    source = await startSourceServer(root);
    await source.query("postgres", "create database shop");
    await source.query("shop", "create table items (id int primary key, name text); insert into items select g, 'item ' || g from generate_series(1, 1000) g");
    store = await openBlobStore(pathToFileURL(path.join(root, "store")).href);
    pgs = new TimelinePostgres(root, store, await resolveUnprivilegedUser());
  });

  afterAll(async () => {
    await source?.stop();
    await store?.close();
    await rm(root, { recursive: true, force: true });
  });

  function importShop(workdir: string) {
    return runFastImport(
      { store, prefix: `${timelinePrefix(ref)}fast-import`, timeline: ref },
      { source: `postgresql://cloud_admin@127.0.0.1:${source.postgres.port}/shop`, sourcePassword: adminPassword, workdir: path.join(root, workdir), jobs: 2, memoryMb: 256 },
      capturingReporter().reporter,
    );
  }

  it("makes the import the timeline's first snapshot: a primary starts with the imported rows, writes, and after a clean stop both are there", async () => {
    await importShop("work1");
    const first = await pgs.startTimeline(ref);
    expect((await queryRows<{ n: string }>(first.postgres, "select count(*) as n from items", "shop"))[0]!.n).toBe("1000");
    await queryRows(first.postgres, "insert into items values (1001, 'written on top')", "shop");
    await first.postgres.stop("fast");
    await pgs.shipUntilShutdown(ref, first.generation, first.dataDir, first.startLsn);
    const second = await pgs.startTimeline(ref);
    try {
      const rows = await queryRows<{ n: string; top: string }>(second.postgres, "select count(*) as n, max(name) filter (where id = 1001) as top from items", "shop");
      expect(rows[0]).toEqual({ n: "1001", top: "written on top" });
    } finally {
      await second.postgres.stop("fast");
    }
  }, 300_000);

  it("refuses a timeline that exists, before any work, and changes nothing", async () => {
    const before = await resolveHistory(store, ref);
    const err = await importShop("work2").then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(TimelineExistsError);
    expect((err as Error).message).toMatch(/timeline tenant1\/imported already exists; fast-import only creates a new timeline/);
    const after = await resolveHistory(store, ref);
    expect(after.durableEnd).toBe(before.durableEnd);
    expect(after.generations.highest).toBe(before.generations.highest);
  });
});
