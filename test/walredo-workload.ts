/**
 * A real PostgreSQL 15 cluster with a mixed workload, for the WAL reader and
 * WalRedo proof tests: base images of the database at a checkpoint, then more
 * workload, then a clean stop, so pg_wal holds every record after the base.
 */
import { chmod, cp, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { freePort } from "../src/net/free-port.js";
import { initdb, pgProgram, resolveUnprivilegedUser, runProgramAs, startPostgres, systemPgBinaries } from "../src/pg/index.js";
import { parseLsn } from "../src/wal/index.js";

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
