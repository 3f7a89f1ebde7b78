import { Writable } from "node:stream";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import {
  bulkLoadSettings,
  buildRoleScript,
  compileFastImportOptions,
  FastImportOptionsError,
  InvalidSourceError,
  LogReporter,
  parseSourceConnection,
  resolvePgBinaries,
  TtyReporter,
} from "../src/fastimport/index.js";

/** What pg_dumpall --roles-only (15) prints, including a psql meta-command and quoted names. */
const dumpallOutput = `--
-- PostgreSQL database cluster dump
--

\\restrict abc123

SET default_transaction_read_only = off;

SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;

--
-- Roles
--

CREATE ROLE alice;
ALTER ROLE alice WITH SUPERUSER INHERIT NOCREATEROLE CREATEDB LOGIN REPLICATION BYPASSRLS PASSWORD 'SCRAM-SHA-256$4096:abc=$def=:ghi=';
CREATE ROLE "Bob ""the"" Reader";
ALTER ROLE "Bob ""the"" Reader" WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB NOLOGIN NOREPLICATION NOBYPASSRLS;
CREATE ROLE cloud_admin;
ALTER ROLE cloud_admin WITH SUPERUSER INHERIT CREATEROLE CREATEDB LOGIN REPLICATION BYPASSRLS;
CREATE ROLE carol;
ALTER ROLE carol WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS CONNECTION LIMIT 3 VALID UNTIL '2030-01-01 00:00:00+00';
COMMENT ON ROLE carol IS 'it''s carol; not SUPERUSER';

--
-- User Configurations
--

ALTER ROLE alice SET search_path TO '$user', 'public';

--
-- Role memberships
--

GRANT "Bob ""the"" Reader" TO alice GRANTED BY cloud_admin;
GRANT carol TO alice WITH ADMIN OPTION GRANTED BY cloud_admin;

\\unrestrict abc123

--
-- PostgreSQL database cluster dump complete
--
`;

describe("fast-import role script", () => {
  it("demotes SUPERUSER, REPLICATION and BYPASSRLS and keeps password, limits, settings, comments and memberships", () => {
    const script = buildRoleScript(dumpallOutput, { roles: "all", superuser: "cloud_admin" });
    expect(script.roles).toEqual(["alice", 'Bob "the" Reader', "carol"]);
    expect(script.demoted).toEqual(["alice"]);
    expect(script.statements).toEqual([
      "SET default_transaction_read_only = off",
      "SET client_encoding = 'UTF8'",
      "SET standard_conforming_strings = on",
      "CREATE ROLE alice",
      "ALTER ROLE alice WITH NOSUPERUSER INHERIT NOCREATEROLE CREATEDB LOGIN NOREPLICATION NOBYPASSRLS PASSWORD 'SCRAM-SHA-256$4096:abc=$def=:ghi='",
      'CREATE ROLE "Bob ""the"" Reader"',
      'ALTER ROLE "Bob ""the"" Reader" WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB NOLOGIN NOREPLICATION NOBYPASSRLS',
      "CREATE ROLE carol",
      "ALTER ROLE carol WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS CONNECTION LIMIT 3 VALID UNTIL '2030-01-01 00:00:00+00'",
      "COMMENT ON ROLE carol IS 'it''s carol; not SUPERUSER'",
      "ALTER ROLE alice SET search_path TO '$user', 'public'",
      'GRANT "Bob ""the"" Reader" TO alice',
      "GRANT carol TO alice WITH ADMIN OPTION",
    ]);
  });

  it("never creates or alters the snapshot's own superuser", () => {
    const script = buildRoleScript(dumpallOutput, { roles: "all", superuser: "cloud_admin" });
    expect(script.statements.filter((s) => s.includes("cloud_admin"))).toEqual([]);
  });

  it("keeps only the chosen roles, and memberships between them", () => {
    const script = buildRoleScript(dumpallOutput, { roles: new Set(["alice", "carol"]), superuser: "cloud_admin" });
    expect(script.roles).toEqual(["alice", "carol"]);
    expect(script.statements.filter((s) => s.startsWith("GRANT"))).toEqual(["GRANT carol TO alice WITH ADMIN OPTION"]);
    expect(script.statements.some((s) => s.includes("Bob"))).toBe(false);
  });
});

describe("fast-import source connection", () => {
  it("keeps the password out of every URI it hands to child programs", () => {
    const source = parseSourceConnection("postgresql://alice:s%40cret@db.example:6543/shop?sslmode=require");
    expect(source.uriFor("shop")).toBe("postgresql://alice@db.example:6543/shop?sslmode=require");
    expect(source.uriFor("other db")).toBe("postgresql://alice@db.example:6543/other%20db?sslmode=require");
    expect(source.redacted()).toBe("postgresql://alice:***@db.example:6543/shop?sslmode=require");
    expect(source.childEnv()).toEqual({ PGPASSWORD: "s@cret" });
    expect(source.database).toBe("shop");
  });

  it("takes the password from PGPASSWORD or a password parameter when the URI has none in its user part", () => {
    expect(parseSourceConnection("postgres://bob@h/db", "from-env").childEnv()).toEqual({ PGPASSWORD: "from-env" });
    const withParam = parseSourceConnection("postgresql://bob@h/db?password=p1&application_name=x");
    expect(withParam.childEnv()).toEqual({ PGPASSWORD: "p1" });
    expect(withParam.uriFor("db")).toBe("postgresql://bob@h/db?application_name=x");
    expect(parseSourceConnection("postgresql://bob@h/db").childEnv()).toEqual({});
  });

  it.each([
    ["", /is not usable: it is empty/],
    ["host=db user=bob", /it does not parse as a URI/],
    ["mysql://bob:pw@h/db", /the scheme "mysql:" is not postgresql:/],
    ["postgresql://bob:pw@h:70000/db", /it does not parse as a URI/],
    ["postgresql://bob:pw@h/db/extra", /the path names more than one segment/],
  ])("rejects %j with InvalidSourceError, never showing the password", (raw, message) => {
    expect(() => parseSourceConnection(raw)).toThrow(InvalidSourceError);
    expect(() => parseSourceConnection(raw)).toThrow(message);
    try {
      parseSourceConnection(raw);
    } catch (error) {
      expect((error as Error).message).not.toMatch(/:pw@/);
    }
  });
});

describe("fast-import options", () => {
  const base = { source: "postgresql://u@h/shop", workdir: "/tmp/w" };

  it("imports the database the URI names by default, with no roles", () => {
    expect(compileFastImportOptions(base).selection).toEqual({ wholeInstance: false, databases: ["shop"], roles: [] });
  });

  it.each([
    [{ ...base, jobs: 0 }, "--jobs: 0 is not a whole number from 1 to 64"],
    [{ ...base, memoryMb: 10 }, "--memory-mb: 10 is not a whole number from 64 to 16777216"],
    [{ ...base, workdir: "rel/dir" }, '--workdir: "rel/dir" is not an absolute path'],
    [{ ...base, source: "postgresql://u@h" }, "--databases: no database chosen: name one in the --source URI, list them with --databases, or use --whole-instance"],
    [{ ...base, databases: ["template1"] }, '--databases: "template1" is a template database, which is never imported'],
    [{ ...base, roles: ["cloud_admin"] }, '--roles: "cloud_admin" is the snapshot\'s own superuser; it exists already'],
    [{ ...base, roles: ["pg_monitor"] }, '--roles: "pg_monitor" is a predefined role; every cluster has it'],
    [{ ...base, wholeInstance: true, databases: ["a"] }, "--whole-instance: takes every database and role; leave out --databases and --roles"],
  ])("rejects %j", (options, message) => {
    expect(() => compileFastImportOptions(options)).toThrow(FastImportOptionsError);
    expect(() => compileFastImportOptions(options)).toThrow(message);
  });

  it("splits memory between shared_buffers and the index builds of the jobs", () => {
    const settings = bulkLoadSettings(1000, 4);
    expect(settings).toMatchObject({
      shared_buffers: "200MB",
      maintenance_work_mem: "150MB",
      wal_level: "minimal",
      fsync: "off",
      full_page_writes: "off",
      synchronous_commit: "off",
      max_wal_senders: "0",
      autovacuum: "off",
      max_parallel_workers: "4",
      max_parallel_maintenance_workers: "4",
    });
  });
});

describe("fast-import terminal progress", () => {
  it("redraws one live line with phase, bytes of the estimate, tables and rate, and leaves a line per finished phase", () => {
    const written: string[] = [];
    const out = { columns: 120, write: (text: string) => written.push(text) } as unknown as NodeJS.WriteStream;
    const reporter = new TtyReporter(out);
    reporter.phaseStarted("dump", "shop");
    reporter.progress({ phase: "dump", detail: "shop", bytesDone: 5_000_000, bytesTotal: 20_000_000, itemsDone: 3, itemsTotal: 7, itemUnit: "tables", phaseElapsedMs: 2000 });
    reporter.phaseFinished("dump", 2500);
    expect(written).toEqual([
      "\r\x1b[2Kdump: shop",
      "\r\x1b[2Kdump shop: 5.00 MB / ~20.0 MB, 3/7 tables, 2.50 MB/s, 2 s",
      "\r\x1b[2K✓ dump (2.5 s)\n",
    ]);
  });
});

describe("fast-import Postgres programs", () => {
  it("uses Debian's postgresql-15 when neither --pg-bin nor a built bundle is there", async () => {
    expect(await resolvePgBinaries(undefined, "/nonexistent-cwd")).toEqual({ major: 15, binDir: "/usr/lib/postgresql/15/bin" });
  });

  it("rejects a --pg-bin directory without postgres", async () => {
    await expect(resolvePgBinaries("/tmp")).rejects.toThrow(FastImportOptionsError);
    await expect(resolvePgBinaries("/tmp")).rejects.toThrow("--pg-bin: no postgres binary in /tmp");
  });
});

describe("fast-import log progress", () => {
  it("writes one JSON line per progress sample with bytes, items and rate", () => {
    const lines: string[] = [];
    const sink = new Writable({ write: (chunk, _enc, done) => { lines.push(String(chunk)); done(); } });
    const reporter = new LogReporter(pino({ level: "info", base: null, timestamp: false }, sink));
    reporter.progress({ phase: "upload", detail: "p/pgdata/", bytesDone: 3_000_000, bytesTotal: 9_000_000, itemsDone: 10, itemsTotal: 30, itemUnit: "files", phaseElapsedMs: 1500 });
    expect(lines.map((line) => JSON.parse(line))).toEqual([{
      level: 30, msg: "progress", phase: "upload", detail: "p/pgdata/",
      bytes_done: 3_000_000, bytes_total: 9_000_000, files_done: 10, files_total: 30, bytes_per_second: 2_000_000,
    }]);
  });
});
