import { chmod, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import pino from "pino";
import { Compute, compileComputeCtlOptions, parseComputeSpec, type ComputeCtlOptions, type ComputeSpec } from "../src/computectl/index.js";
import { freePort } from "../src/net/free-port.js";
import { initdb, resolveUnprivilegedUser, startPostgres, systemPgBinaries, type RunningPostgres } from "../src/pg/index.js";

export const silentLogger = pino({ level: "silent" });

/** A temp directory the postgres user can traverse (mkdtemp makes 0700). */
export async function traversableTempDir(prefix: string): Promise<{ dir: string; remove(): Promise<void> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  await chmod(dir, 0o755);
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

/** A minimal valid spec (JSON shape), with `extra` merged in at the top level. */
export function specJson(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    format_version: 1.0,
    cluster: { roles: [], databases: [], settings: [] },
    tenant_id: "t1", timeline_id: "tl1", endpoint_id: "ep1",
    ...extra,
  };
}

export function spec(extra: Record<string, unknown> = {}): ComputeSpec {
  return parseComputeSpec(specJson(extra));
}

/** A Compute over system Postgres 15 in `root` (templates shared across a suite through `templateRoot`). */
export function newCompute(root: string, options: Partial<ComputeCtlOptions> = {}): Compute {
  return new Compute(
    compileComputeCtlOptions({
      pgdata: path.join(root, "pgdata"),
      binaries: systemPgBinaries(15),
      activityPollMs: 50,
      ...options,
    }),
    { logger: silentLogger },
  );
}

/** A fresh initdb'd Postgres 15 under `dir`, running as the unprivileged user on a free port. */
export async function startScratchPostgres(dir: string): Promise<RunningPostgres> {
  const binaries = systemPgBinaries(15);
  const user = await resolveUnprivilegedUser();
  const dataDir = path.join(dir, "data");
  await initdb({ binaries, user, dataDir, extraArgs: ["--no-sync"] });
  return startPostgres({
    binaries, user, dataDir, port: await freePort(), socketDir: path.join(dir, "sock"), logFile: path.join(dir, "pg.log"),
  });
}

/** Runs one statement on a running compute (as cloud_admin, database postgres) and returns its rows. */
export async function computeSql<T extends pg.QueryResultRow>(compute: Compute, text: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: compute.status().connectionUri });
  await client.connect();
  try {
    return (await client.query<T>(text)).rows;
  } finally {
    await client.end();
  }
}
