import { execFile } from "node:child_process";
import { realpath } from "node:fs/promises";
import { promisify } from "node:util";
import { pgProgram, type PgBinaries } from "../../pg/index.js";
import type { PgInstallDirs } from "./install-layout.js";

const execFileAsync = promisify(execFile);

/**
 * The sharedir and pkglibdir of a Postgres install, from the pg_config next
 * to its binaries (pg_config, like postgres, finds them relative to its own
 * real location, so a copied or bundled install answers with its own dirs).
 */
export async function readPgInstallDirs(binaries: PgBinaries): Promise<PgInstallDirs> {
  const pgConfig = await realpath(pgProgram(binaries, "pg_config")).catch(() => {
    throw new Error(`no pg_config in ${binaries.binDir}; pass the install's sharedir and pkglibdir instead`);
  });
  const { stdout } = await execFileAsync(pgConfig, ["--sharedir", "--pkglibdir"]);
  const [sharedir, pkglibdir] = stdout.trim().split("\n");
  if (!sharedir || !pkglibdir) throw new Error(`${pgConfig} --sharedir --pkglibdir printed ${JSON.stringify(stdout)}`);
  return { sharedir, pkglibdir };
}
