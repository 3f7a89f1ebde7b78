import { chmod, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openBlobStore, type BlobStore } from "../src/blob/index.js";
import type { Compute } from "../src/computectl/index.js";
import { runFastImport, TimelineExistsError } from "../src/fastimport/index.js";
import { resolveHistory, timelinePrefix, type TimelineRef } from "../src/timeline/index.js";
import { newCompute, spec } from "./computectl-fixtures.js";
import { adminPassword, capturingReporter, startSourceServer, type SourceServer } from "./fast-import-fixtures.js";

const ref: TimelineRef = { tenantId: "tenant1", timelineId: "imported" };

describe("fast-import into a timeline", () => {
  let root: string;
  let source: SourceServer;
  let store: BlobStore;

  beforeAll(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), "pgmesh-import-timeline-"));
    await chmod(root, 0o755);
    source = await startSourceServer(root);
    await source.query("postgres", "create database shop");
    await source.query("shop", "create table items (id int primary key, name text); insert into items select g, 'item ' || g from generate_series(1, 1000) g");
    store = await openBlobStore(pathToFileURL(path.join(root, "store")).href);
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

  it("makes the import the timeline's first snapshot: a compute starts with the imported rows, writes, and after a clean stop a compute on an empty PGDATA has both", async () => {
    await importShop("work1");
    const startCompute = async (dir: string): Promise<Compute> => {
      const compute = newCompute(path.join(root, dir), { templateRoot: path.join(root, "templates"), rpoMs: 200 });
      compute.begin("127.0.0.1:1");
      await compute.configure(spec({
        tenant_id: ref.tenantId, timeline_id: ref.timelineId,
        pgmesh: { base_data: { source: "timeline", storage: pathToFileURL(path.join(root, "store")).href } },
      }));
      await compute.waitUntilRunning();
      return compute;
    };
    const inShop = async <T extends pg.QueryResultRow>(compute: Compute, text: string): Promise<T[]> => {
      const uri = new URL(compute.status().connectionUri);
      uri.pathname = "/shop";
      const client = new pg.Client({ connectionString: uri.toString() });
      await client.connect();
      try {
        return (await client.query<T>(text)).rows;
      } finally {
        await client.end();
      }
    };
    const first = await startCompute("compute-a");
    expect(await inShop(first, "select count(*)::int as n from items")).toEqual([{ n: 1000 }]);
    await inShop(first, "insert into items values (1001, 'written on top')");
    expect((await first.terminate("fast")).state).toBe("terminated");
    const second = await startCompute("compute-b");
    try {
      expect(await inShop(second, "select count(*)::int as n, max(name) filter (where id = 1001) as top from items"))
        .toEqual([{ n: 1001, top: "written on top" }]);
    } finally {
      await second.terminate("fast");
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
