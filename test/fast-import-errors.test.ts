import { chmod, mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openBlobStore, type BlobStore } from "../src/blob/index.js";
import {
  DiskFullError,
  getJson,
  ImportCancelledError,
  InvalidSourceError,
  runFastImport,
  SourceUnreachableError,
  ToolFailedError,
  WorkdirNotEmptyError,
  type FastImportOptions,
} from "../src/fastimport/index.js";
import { freePort } from "../src/net/free-port.js";
import { adminPassword, capturingReporter, startSourceServer, type SourceServer } from "./fast-import-fixtures.js";

const restrictedPassword = "r3stricted-Pw";
const repoRoot = path.resolve(import.meta.dirname, "..");
/** --memory-mb's default: a quarter of the machine's memory. */
const memoryMbDefault = () => Math.floor(os.totalmem() / 4 / 2 ** 20);

describe("fast-import failures", () => {
  let root: string;
  let source: SourceServer;
  let store: BlobStore;
  let runs = 0;

  beforeAll(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), "pgmesh-fast-import-errors-"));
    await chmod(root, 0o755);
    source = await startSourceServer(root);
    await source.query("postgres", "create database shop");
    await source.query("shop", `
      create table items (id int primary key, name text);
      insert into items select i, 'item ' || i from generate_series(1, 100) i;
      create table secret (id int primary key, s text);
      create role restricted login password '${restrictedPassword}';
      grant select on items to restricted;
    `);
    store = await openBlobStore(`file://${root}/store`);
  });

  afterAll(async () => {
    await store?.close();
    await source?.stop();
    await rm(root, { recursive: true, force: true });
  });

  /** Runs an import expected to fail; returns the error and what was logged. */
  async function failingImport(prefix: string, options: Partial<FastImportOptions>): Promise<{ error: unknown; log: string }> {
    const { reporter, text } = capturingReporter();
    runs += 1;
    const error = await runFastImport(
      { store, prefix },
      {
        source: source.uri("shop"),
        workdir: path.join(root, `work${runs}`),
        jobs: 2,
        memoryMb: 128,
        ...options,
      },
      reporter,
    ).then(
      () => undefined,
      (e: unknown) => e,
    );
    return { error, log: text() };
  }

  /** Both status objects say not done, with the error; nothing is left under P/pgdata/. */
  async function expectFailedSnapshot(prefix: string, phase: string, message: RegExp): Promise<void> {
    const pgdata = await getJson(store, `${prefix}/status/pgdata`);
    expect(pgdata).toMatchObject({ done: false, phase });
    expect(pgdata!.error).toMatch(message);
    const job = await getJson(store, `${prefix}/status/fast_import`);
    expect(job).toMatchObject({ done: false, phase });
    expect(job!.error).toMatch(message);
    expect(job!.timings_ms).toHaveProperty("total");
    expect(job!.bytes).toHaveProperty("uploaded", 0);
    const left = [];
    for await (const info of store.listAll(`${prefix}/pgdata/`)) left.push(info.key);
    expect(left).toEqual([]);
  }

  it("fails with SourceUnreachableError when nothing listens at the source", async () => {
    const port = await freePort();
    const { error, log } = await failingImport("unreachable", { source: `postgresql://cloud_admin:${adminPassword}@127.0.0.1:${port}/shop` });
    expect(error).toBeInstanceOf(SourceUnreachableError);
    expect((error as Error).message).toBe(
      `cannot connect to the source postgresql://cloud_admin:***@127.0.0.1:${port}/shop: connection refused (nothing listens on that host and port); check the host, port, database, user and password, and that the server accepts connections from here`,
    );
    expect(log).not.toContain(adminPassword);
    await expectFailedSnapshot("unreachable", "check", /connection refused/);
  });

  it("fails with SourceUnreachableError when the password is wrong", async () => {
    const { error } = await failingImport("bad-password", { source: source.uri("shop", "cloud_admin", "wrong-password") });
    expect(error).toBeInstanceOf(SourceUnreachableError);
    expect((error as Error).message).toMatch(/postgresql:\/\/cloud_admin:\*\*\*@.*: password authentication failed/);
    await expectFailedSnapshot("bad-password", "check", /password authentication failed/);
  });

  it("rejects a bad connection string before any work, without echoing its password", async () => {
    const { error } = await failingImport("bad-uri", { source: `postgresql://cloud_admin:${adminPassword}@127.0.0.1:99999/shop` });
    expect(error).toBeInstanceOf(InvalidSourceError);
    expect((error as Error).message).toMatch(/^the source connection string "postgresql:\/\/cloud_admin:\*\*\*@127\.0\.0\.1:99999\/shop" is not usable: it does not parse as a URI/);
    expect((error as Error).message).not.toContain(adminPassword);
    await expect(readdir(path.join(root, `work${runs}`))).rejects.toThrow(/ENOENT/);
    await expectFailedSnapshot("bad-uri", "options", /is not usable/);
  });

  it("names a chosen database that the source does not have", async () => {
    const { error } = await failingImport("no-such-db", { databases: ["shop", "nope"] });
    expect((error as Error).message).toMatch(/^database "nope" does not exist on the source postgresql:\/\/cloud_admin:\*\*\*@127\.0\.0\.1:\d+\/shop \(or is a template or does not allow connections\); check --databases$/);
    await expectFailedSnapshot("no-such-db", "check", /database "nope" does not exist/);
  });

  it("refuses a non-empty working directory and touches nothing in it", async () => {
    const workdir = path.join(root, "occupied");
    await mkdir(workdir);
    await writeFile(path.join(workdir, "keep.txt"), "mine");
    const { error } = await failingImport("occupied", { workdir });
    expect(error).toBeInstanceOf(WorkdirNotEmptyError);
    expect((error as Error).message).toBe(
      `the working directory ${workdir} is not empty (it holds "keep.txt"); give an empty or new directory, nothing in it was touched`,
    );
    expect(await readdir(workdir)).toEqual(["keep.txt"]);
    await expectFailedSnapshot("occupied", "check", /is not empty/);
  });

  it("deletes the objects an earlier, unfinished import left under P/pgdata/", async () => {
    const leftover = Buffer.from("half a relation");
    await store.put("stale/pgdata/base/5/16384", (async function* () { yield leftover; })());
    const { error } = await failingImport("stale", { source: `postgresql://127.0.0.1:${await freePort()}/shop` });
    expect(error).toBeInstanceOf(SourceUnreachableError);
    await expectFailedSnapshot("stale", "check", /connection refused/);
  });

  it("fails the dump when the source login may not read a table, naming the table", async () => {
    const { error, log } = await failingImport("denied", { source: `postgresql://restricted@127.0.0.1:${source.postgres.port}/shop`, sourcePassword: restrictedPassword });
    expect(error).toBeInstanceOf(ToolFailedError);
    expect((error as Error).message).toMatch(/^pg_dump failed for postgresql:\/\/restricted:\*\*\*@127\.0\.0\.1:\d+\/shop \(exit code 1\): .*permission denied for table secret/);
    expect(log).not.toContain(restrictedPassword);
    await expectFailedSnapshot("denied", "dump", /permission denied for table secret/);
  });

  it("reports a working directory that runs out of space as DiskFullError", async () => {
    await source.query("postgres", "create database big");
    await source.query("big", `
      create table filler (id int primary key, payload text);
      insert into filler select i, md5(i::text) || md5((i + 1)::text) || md5((i + 2)::text) || md5((i + 3)::text)
        from generate_series(1, 300000) i;
    `);
    const workdir = path.join(root, "tmpfs");
    await mkdir(workdir);
    // 56 MiB: room for initdb's ~40 MiB, not for the dump and restore of ~50 MiB of data.
    await execa("mount", ["-t", "tmpfs", "-o", "size=56m,mode=0755", "tmpfs", workdir]);
    try {
      const { error } = await failingImport("full", { source: source.uri("big"), workdir });
      expect(error).toBeInstanceOf(DiskFullError);
      expect((error as Error).message).toMatch(
        new RegExp(`^the working directory ${workdir} ran out of space during (dump|restore|vacuum) \\(.*\\); give --workdir a volume with room`),
      );
      await expectFailedSnapshot("full", (error as DiskFullError).phase, /ran out of space/);
    } finally {
      await execa("umount", [workdir]);
    }
  });

  it("stops at once when cancelled, kills what it started, and records the cancellation", async () => {
    const abort = new AbortController();
    const { reporter } = capturingReporter();
    const phaseStarted = reporter.phaseStarted.bind(reporter);
    reporter.phaseStarted = (phase, detail) => {
      phaseStarted(phase, detail);
      if (phase === "dump") abort.abort(new Error("SIGINT"));
    };
    const workdir = path.join(root, "cancelled");
    const run = runFastImport({ store, prefix: "cancelled" }, { source: source.uri("shop"), workdir, jobs: 2, memoryMb: 128 }, reporter, abort.signal);
    await expect(run).rejects.toThrow(ImportCancelledError);
    await expect(run).rejects.toThrow("the import was cancelled during dump");
    await expectFailedSnapshot("cancelled", "dump", /cancelled/);
    // The local Postgres is gone: its postmaster.pid was removed by the shutdown.
    await expect(readdir(path.join(workdir, "pgdata"))).resolves.not.toContain("postmaster.pid");
  });

  describe("the fast-import binary", () => {
    const bin = path.join(repoRoot, "dist/cmd/fast-import.js");

    it("lists every flag with its environment variable in --help, and says what is imported by default", async () => {
      const { stdout, exitCode } = await execa("node", [bin, "--help"]);
      expect(exitCode).toBe(0);
      for (const flag of ["source", "storage", "prefix", "workdir", "jobs", "memory-mb", "databases", "roles", "whole-instance", "pg-bin"]) {
        expect(stdout).toContain(`--${flag}`);
        expect(stdout).toContain(`PGMESH_${flag.toUpperCase().replaceAll("-", "_")}`);
      }
      expect(stdout).toMatch(/databases to import \(default: the one the --source URI names\)/);
      expect(stdout).toMatch(/every database that is not a template/);
    });

    it("takes the source from PGMESH_SOURCE and the password from PGPASSWORD, logs JSON without the password, and exits 1 on failure", async () => {
      const port = await freePort();
      const result = await execa("node", [bin, "--storage", `file://${root}/store`, "--prefix", "cli", "--workdir", path.join(root, "cli-work")], {
        env: { PGMESH_SOURCE: `postgresql://cloud_admin@127.0.0.1:${port}/shop`, PGPASSWORD: adminPassword },
        reject: false,
      });
      expect(result.exitCode).toBe(1);
      expect(result.stderr).toContain(`fast-import: cannot connect to the source postgresql://cloud_admin:***@127.0.0.1:${port}/shop: connection refused`);
      const lines = result.stdout.trim().split("\n").map((line) => JSON.parse(line) as { msg: string; phase?: string });
      expect(lines.map((line) => line.msg)).toEqual(expect.arrayContaining(["check started", "check finished"]));
      expect(lines[0]!.msg).toBe(`importing postgresql://cloud_admin:***@127.0.0.1:${port}/shop into cli/pgdata/ (2 jobs, ${memoryMbDefault()} MiB)`);
      expect(result.stdout + result.stderr).not.toContain(adminPassword);
      await expectFailedSnapshot("cli", "check", /connection refused/);
    });

    it("draws a live status line instead of JSON when it runs on a terminal", async () => {
      const port = await freePort();
      const command = `stty cols 150; node ${bin} --storage file://${root}/store --prefix tty --workdir ${path.join(root, "tty-work")}`;
      // script(1) gives the binary a pseudo-terminal.
      const result = await execa("script", ["-qfec", command, "/dev/null"], {
        env: { PGMESH_SOURCE: `postgresql://cloud_admin@127.0.0.1:${port}/shop`, PGPASSWORD: adminPassword },
        reject: false,
      });
      expect(result.exitCode).toBe(1);
      expect(result.stdout).toContain(`\r\x1b[2Kcheck: postgresql://cloud_admin:***@127.0.0.1:${port}/shop`);
      expect(result.stdout).toContain("warning: import failed in check: cannot connect to the source");
      expect(result.stdout).not.toContain('"level":');
      expect(result.stdout).not.toContain(adminPassword);
    });

    it("exits 2 with a usage message when a required flag is missing", async () => {
      const result = await execa("node", [bin, "--storage", `file://${root}/store`, "--prefix", "x", "--workdir", "/tmp/x"], { reject: false, env: { PGMESH_SOURCE: "" } });
      expect(result.exitCode).toBe(2);
      expect(result.stderr).toBe("fast-import: --source is required (or PGMESH_SOURCE); see --help");
    });
  });
});
