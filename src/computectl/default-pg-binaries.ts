import { access, constants } from "node:fs/promises";
import path from "node:path";
import { checkPgBinaries, systemPgBinaries, type PgBinaries } from "../pg/index.js";

/**
 * The Postgres programs compute-ctl runs: the directory of `pgbin` (-b, the
 * postgres binary) when given; else the bundle's v15/bin under
 * `<cwd>/.pgmesh/bundle` when it was built; else Debian's postgresql-15.
 */
export async function defaultPgBinaries(pgbin?: string, cwd: string = process.cwd()): Promise<PgBinaries> {
  if (pgbin) return checkPgBinaries({ major: 15, binDir: path.dirname(path.resolve(cwd, pgbin)) });
  const bundleBin = path.join(cwd, ".pgmesh", "bundle", "v15", "bin");
  const bundled = await access(path.join(bundleBin, "postgres"), constants.X_OK).then(() => true, () => false);
  return checkPgBinaries(bundled ? { major: 15, binDir: bundleBin } : systemPgBinaries(15));
}
