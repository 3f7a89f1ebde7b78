import { chmod, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openBlobStore, type BlobStore } from "../src/blob/index.js";
import { getJson, runFastImport, SnapshotExistsError, type FastImportOptions } from "../src/fastimport/index.js";
import type { Compute } from "../src/computectl/index.js";
import type { BlobStoreOptions } from "../src/blob/index.js";
import type { RunningPostgres } from "../src/pg/index.js";
import { newCompute, spec } from "./computectl-fixtures.js";
import { startS3rver, type S3rverHandle } from "./helpers/s3rver.js";
import {
  adminPassword,
  capturingReporter,
  createProofDatabase,
  queryAll,
  startFromSnapshot,
  startSourceServer,
  tableChecksums,
  type SourceServer,
  type TableChecksum,
} from "./fast-import-fixtures.js";

/** An import, a restore and a compute start; generous because the whole suite shares two cores. */
const importTimeoutMs = 300_000;

describe("fast-import", () => {
  let root: string;
  let source: SourceServer;
  let sourceSums: Record<string, TableChecksum>;
  let s3: S3rverHandle;
  const started: RunningPostgres[] = [];
  const computes: Compute[] = [];

  beforeAll(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), "pgmesh-fast-import-"));
    await chmod(root, 0o755);
    source = await startSourceServer(root);
    await createProofDatabase(source, "shop");
    sourceSums = await tableChecksums(source.uri("shop"));
    s3 = await startS3rver();
  });

  afterAll(async () => {
    for (const postgres of started) await postgres.stop("immediate");
    for (const compute of computes) await compute.shutdown();
    await source?.stop();
    await s3?.stop();
    await rm(root, { recursive: true, force: true });
  });

  async function importInto(store: BlobStore, prefix: string, workdir: string, selection: Partial<FastImportOptions> = { roles: ["alice", "Bob Reader"] }) {
    const { reporter, text } = capturingReporter();
    const result = await runFastImport(
      { store, prefix },
      // The password travels apart from the URI, as PGPASSWORD does for the binary.
      { source: `postgresql://cloud_admin@127.0.0.1:${source.postgres.port}/shop`, sourcePassword: adminPassword, workdir, jobs: 2, memoryMb: 256, ...selection },
      reporter,
    );
    return { result, log: text() };
  }

  async function expectSameAsSource(store: BlobStore, prefix: string, name: string): Promise<string> {
    const postgres = await startFromSnapshot(store, prefix, root, name);
    started.push(postgres);
    const uri = postgres.connectionUri("shop");
    expect(await tableChecksums(uri)).toEqual(sourceSums);
    return uri;
  }

  it("imports a database into a local-directory store, and a plain Postgres started from the snapshot has the same rows", async () => {
    const store = await openBlobStore(`file://${root}/store`);
    const { result, log } = await importInto(store, "shop1", path.join(root, "work1"));
    expect(result.databases).toEqual(["shop"]);
    expect(result.tables).toBeGreaterThanOrEqual(7);
    expect(result.bytes.uploaded).toBe(result.bytes.pgdata);

    expect(await getJson(store, "shop1/status/pgdata")).toMatchObject({ done: true, files: result.files });
    const job = await getJson(store, "shop1/status/fast_import");
    expect(job).toMatchObject({ done: true, bytes: { uploaded: result.bytes.uploaded } });
    expect(Object.keys(job!.timings_ms as object)).toEqual(expect.arrayContaining(["dump", "restore", "vacuum", "upload", "total"]));
    expect(log).not.toContain(adminPassword);

    const uri = await expectSameAsSource(store, "shop1", "restored1");
    await store.close();
    // Sequence, function, and every index kind came across, valid.
    expect(await queryAll(uri, "select last_value, is_called from ticket_seq")).toEqual([{ last_value: "1002", is_called: true }]);
    expect(await queryAll(uri, "select doc_count('doc 1') as n")).toEqual([{ n: "111" }]);
    const indexes = await queryAll<{ name: string; am: string; valid: boolean }>(uri, `
      select c.relname as name, a.amname as am, i.indisvalid as valid from pg_index i
        join pg_class c on c.oid = i.indexrelid join pg_am a on a.oid = c.relam
       where i.indrelid = 'docs'::regclass and c.relname like 'docs_%' order by 1`);
    expect(indexes).toEqual([
      { name: "docs_area_gist", am: "gist", valid: true },
      { name: "docs_created_brin", am: "brin", valid: true },
      { name: "docs_pkey", am: "btree", valid: true },
      { name: "docs_tags_gin", am: "gin", valid: true },
      { name: "docs_title_btree", am: "btree", valid: true },
      { name: "docs_title_hash", am: "hash", valid: true },
    ]);
    await queryAll(uri, "create extension amcheck");
    await queryAll(uri, "select bt_index_check('docs_title_btree', true), bt_index_check('pgbench_accounts_pkey', true)");
  }, importTimeoutMs);

  /** compute-ctl's "snapshot" base_data source lays down PGDATA from P; the data must match the source. */
  async function expectComputeMatches(storage: string, prefix: string, name: string, blobStoreOptions: BlobStoreOptions = {}): Promise<void> {
    const compute = newCompute(path.join(root, name), { blobStoreOptions });
    computes.push(compute);
    compute.begin("127.0.0.1:1");
    await compute.configure(spec({ pgmesh: { base_data: { source: "snapshot", storage, prefix } } }));
    await compute.waitUntilRunning();
    const uri = new URL(compute.status().connectionUri);
    uri.pathname = "/shop";
    expect(await tableChecksums(uri.toString())).toEqual(sourceSums);
  }

  it("starts a compute from the local-directory snapshot through compute-ctl's snapshot source, with the source's rows", async () => {
    await expectComputeMatches(`file://${root}/store`, "shop1", "compute1");
  });

  it("leaves the snapshot vacuumed and analyzed, without event triggers, with the database's settings and chosen roles stripped of superuser attributes", async () => {
    const postgres = started[0]!;
    const uri = postgres.connectionUri("shop");
    const [accounts] = await queryAll<{ pages: number; visible: number; tuples: number }>(uri,
      "select relpages as pages, relallvisible as visible, reltuples as tuples from pg_class where relname = 'pgbench_accounts'");
    expect(accounts!.visible).toBe(accounts!.pages);
    expect(accounts!.tuples).toBe(100000);
    expect(await queryAll(uri, "select count(*)::int as n from pg_event_trigger")).toEqual([{ n: 0 }]);
    expect(await queryAll(uri, "select current_setting('search_path') as path, current_setting('work_mem') as work_mem")).toEqual([
      { path: 'public, "$user"', work_mem: "7MB" },
    ]);
    expect(await queryAll(uri, "select count(*)::int as n from pg_proc where proname = 'noop_ddl'")).toEqual([{ n: 1 }]);

    const roles = await queryAll(uri, `select rolname, rolsuper, rolreplication, rolcanlogin, rolconfig from pg_roles where rolname in ('alice', 'Bob Reader') order by 1`);
    expect(roles).toEqual([
      { rolname: "Bob Reader", rolsuper: false, rolreplication: false, rolcanlogin: false, rolconfig: null },
      { rolname: "alice", rolsuper: false, rolreplication: false, rolcanlogin: true, rolconfig: ["work_mem=8MB"] },
    ]);
    const hash = "select rolpassword from pg_authid where rolname = 'alice'";
    expect(await queryAll(uri, hash)).toEqual(await source.query("postgres", hash));
    expect(await queryAll(uri, "select pg_has_role('alice', 'Bob Reader', 'member') as member")).toEqual([{ member: true }]);
    expect(await queryAll(uri, `select s.setconfig from pg_db_role_setting s join pg_roles r on r.oid = s.setrole
      where r.rolname = 'alice' and s.setdatabase = (select oid from pg_database where datname = 'shop')`)).toEqual([{ setconfig: ["statement_timeout=42s"] }]);
  });

  it("imports the whole instance into S3 (s3rver): every database and role, and the same rows", async () => {
    const store = await openBlobStore(s3.url("snapshots"), s3.blobStoreOptions);
    try {
      const { result } = await importInto(store, "tenant-a/shop", path.join(root, "work-s3"), { wholeInstance: true });
      expect(result.databases).toEqual(["postgres", "shop"]);
      expect(result.roles).toEqual(["Bob Reader", "alice"]);
      expect(await getJson(store, "tenant-a/shop/status/pgdata")).toMatchObject({ done: true, databases: ["postgres", "shop"] });
      const uri = await expectSameAsSource(store, "tenant-a/shop", "restored-s3");
      expect(await queryAll(uri, "select rolname, rolsuper from pg_roles where rolname in ('alice', 'Bob Reader') order by 1")).toEqual([
        { rolname: "Bob Reader", rolsuper: false },
        { rolname: "alice", rolsuper: false },
      ]);
      await expectComputeMatches(s3.url("snapshots"), "tenant-a/shop", "compute-s3", s3.blobStoreOptions);
    } finally {
      await store.close();
    }
  }, importTimeoutMs);

  it("refuses a prefix that already holds a done snapshot, and changes nothing", async () => {
    const store = await openBlobStore(`file://${root}/store`);
    try {
      const before = await getJson(store, "shop1/status/fast_import");
      const run = importInto(store, "shop1", path.join(root, "work-again"));
      await expect(run).rejects.toThrow(SnapshotExistsError);
      await expect(run).rejects.toThrow(/already holds a complete snapshot; import into a new --prefix/);
      expect(await getJson(store, "shop1/status/fast_import")).toEqual(before);
      expect(await getJson(store, "shop1/status/pgdata")).toMatchObject({ done: true });
    } finally {
      await store.close();
    }
  });
});
