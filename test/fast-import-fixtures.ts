/**
 * Shared by the fast-import tests and bench/fast-import.ts: a real source
 * Postgres with password authentication, the proof database, checksums of
 * every table, and a snapshot restored into a fresh directory and started.
 */
import { createWriteStream } from "node:fs";
import { chmod, mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { execa } from "execa";
import pg from "pg";
import { pino } from "pino";
import type { BlobStore } from "../src/blob/index.js";
import { LogReporter } from "../src/fastimport/index.js";
import { freePort } from "../src/net/free-port.js";
import {
  chownTree,
  initdb,
  pgProgram,
  resolveUnprivilegedUser,
  startPostgres,
  systemPgBinaries,
  type OsUser,
  type RunningPostgres,
} from "../src/pg/index.js";

export const binaries = systemPgBinaries(15);
export const adminPassword = "adm1n-S3cret-pw";

export interface SourceServer {
  readonly postgres: RunningPostgres;
  readonly user: OsUser;
  /** URI with the password in it (as an operator might pass it). */
  uri(database: string, user?: string, password?: string): string;
  query<T extends pg.QueryResultRow>(database: string, sql: string): Promise<T[]>;
  stop(): Promise<void>;
}

/** A Postgres 15 that wants a password over TCP (scram-sha-256), as a real source does. */
export async function startSourceServer(root: string, settings: Record<string, string> = {}): Promise<SourceServer> {
  const user = await resolveUnprivilegedUser();
  const pwfile = path.join(root, "source-pw");
  await writeFile(pwfile, `${adminPassword}\n`, { mode: 0o644 });
  const dataDir = path.join(root, "source");
  await initdb({ binaries, dataDir, user, extraArgs: ["--no-sync", "--auth-host=scram-sha-256", `--pwfile=${pwfile}`] });
  const postgres = await startPostgres({
    binaries, user, dataDir, port: await freePort(),
    socketDir: path.join(root, "source-run"), logFile: path.join(root, "source.log"),
    settings: { fsync: "off", ...settings },
  });
  const uri = (database: string, login = "cloud_admin", password = adminPassword) =>
    `postgresql://${encodeURIComponent(login)}:${encodeURIComponent(password)}@127.0.0.1:${postgres.port}/${encodeURIComponent(database)}`;
  return {
    postgres,
    user,
    uri,
    query: (database, sql) => queryAll(uri(database), sql),
    stop: () => postgres.stop("fast"),
  };
}

export async function queryAll<T extends pg.QueryResultRow>(uri: string, sql: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: uri });
  await client.connect();
  try {
    return (await client.query<T>(sql)).rows;
  } finally {
    await client.end();
  }
}

/** pgbench tables at `scale`, run as the source's admin over TCP with PGPASSWORD. */
export async function pgbenchInit(source: SourceServer, database: string, scale: number): Promise<void> {
  await execa(pgProgram(binaries, "pgbench"), ["-i", "-q", "-s", String(scale), "-h", "127.0.0.1", "-p", String(source.postgres.port), "-U", "cloud_admin", database], {
    env: { PGPASSWORD: adminPassword },
  });
}

/**
 * The proof database: pgbench at scale 1 plus a table with TOASTed text and
 * one index of each common kind (btree, hash, gin, gist, brin), a sequence,
 * a view, a materialized view, a function, a table without a primary key,
 * an event trigger (which fast-import must leave out), and roles.
 */
export async function createProofDatabase(source: SourceServer, database: string): Promise<void> {
  await source.query("postgres", `create database ${database}`);
  await pgbenchInit(source, database, 1);
  await source.query(database, `
    create table docs (id serial primary key, title text not null, body text, tags text[], meta jsonb, created timestamptz, area box);
    insert into docs (title, body, tags, meta, created, area)
      select 'doc ' || i,
             (select string_agg(md5(i::text || ':' || j::text), '') from generate_series(1, 300) j),
             array['t' || (i % 7), 't' || (i % 11)],
             jsonb_build_object('i', i, 'even', i % 2 = 0),
             timestamptz '2024-01-01 00:00:00+00' + i * interval '1 minute',
             box(point(i, i), point(i + 1, i + 1))
        from generate_series(1, 500) i;
    create index docs_title_btree on docs using btree (title);
    create index docs_title_hash on docs using hash (title);
    create index docs_tags_gin on docs using gin (tags);
    create index docs_area_gist on docs using gist (area);
    create index docs_created_brin on docs using brin (created);
    create sequence ticket_seq start 1000;
    select nextval('ticket_seq') from generate_series(1, 3);
    create view even_docs as select id, title from docs where (meta->>'even')::boolean;
    create materialized view doc_stats as select count(*) as n, sum(length(body)) as total from docs;
    create function doc_count(prefix text) returns bigint language sql stable
      as $$ select count(*) from docs where title like prefix || '%' $$;
    create table no_pk (a int, b text);
    insert into no_pk select i, repeat('x', i % 50) from generate_series(1, 1000) i;
    create function noop_ddl() returns event_trigger language plpgsql as $$ begin end $$;
    create event trigger noop_ddl_trigger on ddl_command_start execute function noop_ddl();
  `);
  await source.query("postgres", `
    alter database ${database} set search_path = public, "$user";
    alter database ${database} set work_mem = '7MB';
  `);
  await source.query("postgres", `
    create role alice login superuser replication password 'alice-pw';
    alter role alice set work_mem = '8MB';
    create role "Bob Reader" nologin;
    grant "Bob Reader" to alice;
    alter role alice in database ${database} set statement_timeout = '42s';
  `);
}

export interface TableChecksum {
  readonly rows: number;
  readonly md5: string;
}

/** Row count and md5 over every row (as text, sorted) of every table, view and materialized view. */
export async function tableChecksums(uri: string): Promise<Record<string, TableChecksum>> {
  const relations = await queryAll<{ name: string }>(uri, `
    select format('%I.%I', n.nspname, c.relname) as name from pg_class c join pg_namespace n on n.oid = c.relnamespace
     where c.relkind in ('r', 'v', 'm') and n.nspname not in ('pg_catalog', 'information_schema') order by 1`);
  const sums: Record<string, TableChecksum> = {};
  for (const { name } of relations) {
    const [row] = await queryAll<{ n: string; md5: string }>(uri,
      `select count(*) as n, md5(coalesce(string_agg(t::text, E'\\n' order by t::text), '')) as md5 from ${name} t`);
    sums[name] = { rows: Number(row!.n), md5: row!.md5 };
  }
  return sums;
}

/** Directories a snapshot cannot carry (objects only); the same ones compute-ctl recreates (src/computectl/base-data.ts). */
const standardEmptyDirs = [
  "pg_wal/archive_status", "pg_tblspc", "pg_stat_tmp", "pg_notify", "pg_serial", "pg_snapshots",
  "pg_twophase", "pg_replslot", "pg_dynshmem", "pg_commit_ts", "pg_logical/snapshots", "pg_logical/mappings",
];

/** Downloads P/pgdata/ (8 objects at a time) into a fresh directory laid out as the compute spec says. */
export async function restoreSnapshot(store: BlobStore, prefix: string, dataDir: string, user: OsUser): Promise<number> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const base = `${prefix}/pgdata/`;
  const keys: string[] = [];
  for await (const info of store.listAll(base)) keys.push(info.key);
  let next = 0;
  const worker = async () => {
    while (next < keys.length) {
      const key = keys[next++]!;
      const target = path.join(dataDir, key.slice(base.length));
      await mkdir(path.dirname(target), { recursive: true, mode: 0o700 });
      const object = await store.get(key);
      await pipeline(Readable.from(object.body), createWriteStream(target, { mode: 0o600 }));
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  for (const dir of standardEmptyDirs) await mkdir(path.join(dataDir, dir), { recursive: true, mode: 0o700 });
  await chmod(dataDir, 0o700);
  await chownTree(dataDir, user);
  return keys.length;
}

/** Restores the snapshot under `root` and starts a plain Postgres on it. */
export async function startFromSnapshot(store: BlobStore, prefix: string, root: string, name: string): Promise<RunningPostgres> {
  const user = await resolveUnprivilegedUser();
  const dataDir = path.join(root, name);
  await restoreSnapshot(store, prefix, dataDir, user);
  return startPostgres({
    binaries, user, dataDir, port: await freePort(),
    socketDir: path.join(root, `${name}-run`), logFile: path.join(root, `${name}.log`),
  });
}

/** A LogReporter whose JSON lines are kept, to check what an import logged. */
export function capturingReporter(): { reporter: LogReporter; text: () => string } {
  const chunks: string[] = [];
  const sink = new Writable({ write: (chunk, _enc, done) => { chunks.push(String(chunk)); done(); } });
  return { reporter: new LogReporter(pino({ level: "info" }, sink)), text: () => chunks.join("") };
}
