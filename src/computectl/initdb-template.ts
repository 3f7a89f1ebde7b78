import { createHash, randomBytes } from "node:crypto";
import { mkdir, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import { initdb, pgProgram, type OsUser, type PgBinaries } from "../pg/index.js";
import { adminRole } from "./compute-spec.js";

export interface InitdbTemplateOptions {
  readonly binaries: PgBinaries;
  readonly user: OsUser;
  /** Directory holding one template cluster per Postgres build. */
  readonly templateRoot: string;
}

const inFlight = new Map<string, Promise<string>>();

/**
 * The PGDATA of a cluster initdb'd once per Postgres build (keyed by the
 * postgres binary's path, size and mtime) under `templateRoot`: copying it is
 * much faster than running initdb on every start. It is built in a scratch
 * directory and renamed into place, so a crash never leaves half a template.
 */
export async function ensureInitdbTemplate(options: InitdbTemplateOptions): Promise<string> {
  const postgres = await stat(pgProgram(options.binaries, "postgres"));
  const key = createHash("sha256")
    .update(`${options.binaries.binDir}\0${postgres.size}\0${postgres.mtimeMs}\0${adminRole}`)
    .digest("hex")
    .slice(0, 16);
  const dir = path.join(options.templateRoot, `pg${options.binaries.major}-${key}`);
  let pending = inFlight.get(dir);
  if (!pending) {
    pending = buildOnce(dir, options).finally(() => inFlight.delete(dir));
    inFlight.set(dir, pending);
  }
  return pending;
}

async function buildOnce(dir: string, options: InitdbTemplateOptions): Promise<string> {
  const pgdata = path.join(dir, "pgdata");
  if (await exists(path.join(pgdata, "PG_VERSION"))) return pgdata;
  await mkdir(options.templateRoot, { recursive: true, mode: 0o755 });
  const scratch = `${dir}.tmp-${randomBytes(4).toString("hex")}`;
  try {
    await mkdir(scratch, { mode: 0o755 });
    await initdb({
      binaries: options.binaries,
      user: options.user,
      dataDir: path.join(scratch, "pgdata"),
      superuser: adminRole,
      // Synced (no --no-sync): the template outlives this process and is renamed into place only once durable.
      extraArgs: ["--no-instructions"],
    });
    await rename(scratch, dir).catch(async (err: NodeJS.ErrnoException) => {
      // Another compute-ctl won the race: use its template.
      if (err.code !== "ENOTEMPTY" && err.code !== "EEXIST") throw err;
    });
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
  return pgdata;
}

async function exists(file: string): Promise<boolean> {
  return stat(file).then(() => true, () => false);
}
