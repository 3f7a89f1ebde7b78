import { mkdtemp, readFile, rm, chmod } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../src/net/free-port.js";
import {
  initdb, removeOrphanedShmem, resolveUnprivilegedUser, startPostgres, systemPgBinaries, PostgresStartError, type OsUser,
} from "../src/pg/index.js";
import { segmentIdOfLockFile, sysvSegments } from "./helpers/sysv-segments.js";

async function segmentIdOf(dataDir: string): Promise<number> {
  return segmentIdOfLockFile(await readFile(path.join(dataDir, "postmaster.pid"), "utf8"));
}

async function segmentIds(): Promise<number[]> {
  return (await sysvSegments()).map((s) => s.id);
}

describe("local Postgres", () => {
  let root: string;
  let user: OsUser;
  const binaries = systemPgBinaries(15);

  beforeAll(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), "pgmesh-pg-"));
    await chmod(root, 0o755);
    user = await resolveUnprivilegedUser();
    await initdb({ binaries, dataDir: path.join(root, "data"), user, extraArgs: ["--no-sync"] });
  });

  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it("starts as the unprivileged user, answers queries, and stops", async () => {
    const postgres = await startPostgres({
      binaries, user, dataDir: path.join(root, "data"), port: await freePort(),
      socketDir: path.join(root, "sock"), logFile: path.join(root, "pg.log"),
    });
    const client = new pg.Client({ connectionString: postgres.connectionUri() });
    await client.connect();
    const { rows } = await client.query("select current_user, current_setting('server_version_num')::int / 10000 as major");
    await client.end();
    expect(rows[0]).toEqual({ current_user: "cloud_admin", major: 15 });
    await postgres.stop("fast");
    expect(postgres.hasExited).toBe(true);
  });

  it("removes the shared memory segment of a postmaster killed with SIGKILL once its backends let go", async () => {
    const dataDir = path.join(root, "data");
    const postgres = await startPostgres({
      binaries, user, dataDir, port: await freePort(),
      socketDir: path.join(root, "sock"), logFile: path.join(root, "killed.log"),
    });
    const client = new pg.Client({ connectionString: postgres.connectionUri() });
    client.on("error", () => undefined);
    await client.connect();
    const id = await segmentIdOf(dataDir);
    expect(await segmentIds()).toContain(id);

    process.kill(postgres.pid, "SIGKILL");
    expect(await postgres.exited).toEqual({ code: null, signal: "SIGKILL" });
    expect(await segmentIds()).not.toContain(id);
    await client.end().catch(() => undefined);
  });

  it("leaves the segment of a live postmaster alone", async () => {
    const dataDir = path.join(root, "data");
    const postgres = await startPostgres({
      binaries, user, dataDir, port: await freePort(),
      socketDir: path.join(root, "sock"), logFile: path.join(root, "live.log"),
    });
    try {
      expect(await removeOrphanedShmem(dataDir)).toBe(false);
      expect(await segmentIds()).toContain(await segmentIdOf(dataDir));
    } finally {
      await postgres.stop("fast");
    }
  });

  it("fails fast with the log tail when Postgres cannot start", async () => {
    const start = startPostgres({
      binaries, user, dataDir: path.join(root, "data"), port: await freePort(),
      socketDir: path.join(root, "sock"), logFile: path.join(root, "bad.log"),
      settings: { shared_buffers: "not-a-size" },
    });
    await expect(start).rejects.toThrow(PostgresStartError);
    await expect(start).rejects.toThrow(/shared_buffers/);
  });
});
