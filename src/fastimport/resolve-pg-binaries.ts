import { access, constants } from "node:fs/promises";
import path from "node:path";
import { execa } from "execa";
import { checkPgBinaries, pgProgram, systemPgBinaries, type PgBinaries } from "../pg/index.js";
import { FastImportOptionsError } from "./fast-import-errors.js";

/**
 * The Postgres programs fast-import runs: `binDir` (--pg-bin) when given;
 * else the bundle's v15/bin under `<cwd>/.pgmesh/bundle` when it was built;
 * else Debian's postgresql-15. The major version is what `postgres -V` says.
 */
export async function resolvePgBinaries(binDir: string | undefined, cwd: string = process.cwd()): Promise<PgBinaries> {
  const bundleBin = path.join(cwd, ".pgmesh", "bundle", "v15", "bin");
  const bundled = await access(path.join(bundleBin, "postgres"), constants.X_OK).then(() => true, () => false);
  const dir = binDir === undefined ? (bundled ? bundleBin : systemPgBinaries(15).binDir) : path.resolve(cwd, binDir);
  await checkPgBinaries({ major: 0, binDir: dir }).catch((error: Error) => {
    throw new FastImportOptionsError("--pg-bin", error.message);
  });
  const { stdout } = await execa(pgProgram({ major: 0, binDir: dir }, "postgres"), ["-V"]);
  const match = /\(PostgreSQL\) (\d+)/.exec(stdout);
  if (!match) throw new FastImportOptionsError("--pg-bin", `${dir}/postgres -V printed ${JSON.stringify(stdout)}, not a PostgreSQL version`);
  return { major: Number(match[1]), binDir: dir };
}
