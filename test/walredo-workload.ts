/**
 * A real PostgreSQL 15 cluster with a mixed workload, for the WAL reader and
 * WalRedo proof tests: base images of the database at a checkpoint, then more
 * workload, then a clean stop, so pg_wal holds every record after the base.
 */
import { chmod, cp, mkdtemp, open, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { freePort } from "../src/net/free-port.js";
import { initdb, pgProgram, resolveUnprivilegedUser, runProgramAs, startPostgres, systemPgBinaries } from "../src/pg/index.js";
import { parseLsn, readWalRecords, type WalRecord } from "../src/wal/index.js";

export type PageKind = "heap" | "btree" | "gin";

export interface WorkloadRelation {
  readonly name: string;
  readonly relNumber: number;
  readonly kind: PageKind;
}

export interface WalWorkload {
  readonly root: string;
  readonly dataDir: string;
  readonly walDir: string;
  /** Copy of base/<dbOid> taken at baseLsn. */
  readonly baseDbDir: string;
  readonly finalDbDir: string;
  readonly baseLsn: bigint;
  readonly spcOid: number;
  readonly dbOid: number;
  /** Heap, btree and GIN relations of the database at the end (sequences excluded). */
  readonly relations: readonly WorkloadRelation[];
  cleanup(): Promise<void>;
}

export interface WalWorkloadOptions {
  readonly pgbenchScale: number;
  readonly pgbenchTransactions: number;
}

const SETUP_SQL = `
create table docs (id serial primary key, title text, body text, tags text[], n int);
create index docs_n on docs (n);
create index docs_tags on docs using gin (tags) with (fastupdate = off);
create index docs_body_fts on docs using gin (to_tsvector('simple', body));
insert into docs (title, body, tags, n)
  select 'doc ' || g, repeat(md5(g::text), 20), array['t' || (g % 7), 'u' || (g % 13)], g
  from generate_series(1, 2000) g;
insert into docs (title, body, tags, n)
  select 'big ' || g, (select string_agg(md5((g * 1000 + i)::text), '') from generate_series(1, 400) i), array['big'], g
  from generate_series(1, 20) g;
`;

const CHANGE_SQL = `
delete from docs where n % 5 = 0;
update docs set title = title || ' hot' where n % 7 = 1;
update docs set n = n + 100000 where n % 11 = 2;
update docs set tags = tags || array['x' || (n % 3)] where n % 9 = 3;
insert into docs (title, body, tags, n)
  select 'late ' || g, repeat(md5((g * 31)::text), 30), array['late', 't' || (g % 5)], g
  from generate_series(1, 1500) g;
update docs set body = (select string_agg(md5((n * 7 + i)::text), '') from generate_series(1, 300) i) where title like 'big %' and n % 2 = 0;
delete from pgbench_accounts where aid % 17 = 0;
vacuum docs;
vacuum pgbench_accounts;
`;

/** Runs the workload; the caller must call cleanup(). */
export async function runWalWorkload(options: WalWorkloadOptions): Promise<WalWorkload> {
  const root = await mkdtemp(path.join(os.tmpdir(), "pgmesh-wal-"));
  await chmod(root, 0o755);
  const user = await resolveUnprivilegedUser();
  const binaries = systemPgBinaries(15);
  const dataDir = path.join(root, "data");
  await initdb({ binaries, dataDir, user, extraArgs: ["--no-sync"] });
  const port = await freePort();
  const postgres = await startPostgres({
    binaries, user, dataDir, port, socketDir: path.join(root, "sock"), logFile: path.join(root, "pg.log"),
    settings: {
      wal_level: "replica", full_page_writes: "on", autovacuum: "off", fsync: "off",
      max_wal_size: "1GB", wal_keep_size: "1GB", checkpoint_timeout: "1h", shared_buffers: "16MB",
    },
  });
  const client = new pg.Client({ connectionString: postgres.connectionUri() });
  try {
    await client.connect();
    const pgbench = (args: string[]): Promise<string> =>
      runProgramAs(user, pgProgram(binaries, "pgbench"), ["-h", "127.0.0.1", "-p", String(port), "-U", "cloud_admin", ...args, "postgres"]);
    await pgbench(["-i", "-q", "-s", String(options.pgbenchScale)]);
    await client.query(SETUP_SQL);
    await client.query("checkpoint");
    const baseLsn = parseLsn((await client.query("select pg_current_wal_insert_lsn()::text as lsn")).rows[0].lsn);
    const { rows: [db] } = await client.query("select oid, dattablespace from pg_database where datname = current_database()");
    const dbOid = Number(db.oid);
    const spcOid = Number(db.dattablespace);
    const baseDbDir = path.join(root, "base-db");
    await cp(path.join(dataDir, "base", String(dbOid)), baseDbDir, { recursive: true });
    await pgbench(["-n", "-t", String(options.pgbenchTransactions)]);
    for (const statement of CHANGE_SQL.split(";\n").map((s) => s.trim()).filter(Boolean)) {
      await client.query(statement);
    }
    const { rows } = await client.query(`
      select c.relname as name, pg_relation_filenode(c.oid) as relnumber, coalesce(a.amname, 'heap') as kind
      from pg_class c left join pg_am a on a.oid = c.relam
      where c.relkind in ('r', 't', 'i', 'm') and c.relpersistence = 'p' and c.reltablespace = 0
        and coalesce(a.amname, 'heap') in ('heap', 'btree', 'gin') and pg_relation_filenode(c.oid) is not null`);
    await client.query("checkpoint");
    await client.end();
    await postgres.stop("fast");
    const finalDbDir = path.join(dataDir, "base", String(dbOid));
    return {
      root, dataDir, walDir: path.join(dataDir, "pg_wal"), baseDbDir, finalDbDir, baseLsn, spcOid, dbOid,
      relations: rows.map((r) => ({ name: r.name, relNumber: Number(r.relnumber), kind: r.kind as PageKind })),
      cleanup: () => rm(root, { recursive: true, force: true }),
    };
  } catch (err) {
    await client.end().catch(() => undefined);
    await postgres.stop("immediate");
    await rm(root, { recursive: true, force: true });
    throw err;
  }
}

/** One page to rebuild: the records after the base that touch it, and the page Postgres wrote at the end. */
export interface PageCase {
  readonly relation: WorkloadRelation;
  readonly blockNumber: number;
  /** The page at baseLsn; undefined when the first record initialises the page or restores a full image. */
  readonly baseImage: Uint8Array | undefined;
  readonly records: { endLsn: bigint; record: Uint8Array }[];
  readonly finalPage: Uint8Array;
}

async function readBlock(file: string, blockNumber: number): Promise<Uint8Array | undefined> {
  let handle;
  try {
    handle = await open(file, "r");
  } catch {
    return undefined;
  }
  try {
    const page = Buffer.alloc(8192);
    const { bytesRead } = await handle.read(page, 0, 8192, blockNumber * 8192);
    return bytesRead === 8192 ? page : undefined;
  } finally {
    await handle.close();
  }
}

/**
 * Groups every record after the base by the main-fork blocks of the
 * workload's relations it references, and pairs each block with its base
 * image and final page. Blocks gone from the final files (truncated) are left out.
 */
export async function buildPageCases(workload: WalWorkload): Promise<PageCase[]> {
  const byRel = new Map(workload.relations.map((r) => [r.relNumber, r]));
  const groups = new Map<string, { relation: WorkloadRelation; blockNumber: number; records: WalRecord[] }>();
  for await (const record of readWalRecords({ walDir: workload.walDir, startLsn: workload.baseLsn })) {
    for (const b of record.blocks) {
      const relation = byRel.get(b.rel.relNumber);
      if (!relation || b.fork !== 0 || b.rel.dbOid !== workload.dbOid || b.rel.spcOid !== workload.spcOid) continue;
      const key = `${b.rel.relNumber}/${b.blockNumber}`;
      let group = groups.get(key);
      if (!group) groups.set(key, (group = { relation, blockNumber: b.blockNumber, records: [] }));
      if (group.records.at(-1) !== record) group.records.push(record);
    }
  }
  const cases: PageCase[] = [];
  for (const { relation, blockNumber, records } of groups.values()) {
    const file = (dir: string): string => path.join(dir, String(relation.relNumber));
    const finalPage = await readBlock(file(workload.finalDbDir), blockNumber);
    if (!finalPage) continue;
    const first = records[0]!.blocks.find((b) => b.rel.relNumber === relation.relNumber && b.fork === 0 && b.blockNumber === blockNumber)!;
    const baseImage = first.applyImage || first.willInit ? undefined : await readBlock(file(workload.baseDbDir), blockNumber);
    cases.push({ relation, blockNumber, baseImage, records: records.map((r) => ({ endLsn: r.endLsn, record: r.bytes })), finalPage });
  }
  return cases;
}
