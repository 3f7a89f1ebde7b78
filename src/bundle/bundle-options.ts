import { readdir, access, constants } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { BundleBuildError } from "./bundle-errors.js";

export interface BundleOptions {
  /** Where the bundle goes; default `.pgmesh/bundle` (relative to the working directory). */
  readonly outDir?: string;
  /** Postgres majors to include; default: every /usr/lib/postgresql/<N> holding bin/postgres. */
  readonly majors?: readonly number[];
  /** Debian's Postgres root; default /usr/lib/postgresql. */
  readonly pgRoot?: string;
  /** The C modules (every subdirectory with a PGXS Makefile); default: pgext/ of this repository. */
  readonly pgextDir?: string;
  /** The unprivileged account written into the bundle's /etc/passwd; default `postgres`. */
  readonly postgresUser?: string;
  /** Progress lines. */
  readonly log?: (line: string) => void;
}

export interface CompiledBundleOptions {
  readonly outDir: string;
  readonly majors: readonly number[];
  readonly pgRoot: string;
  readonly pgextDir: string;
  readonly postgresUser: string;
  readonly log: (line: string) => void;
}

/** The repository's pgext/, found from this file (src/bundle or dist/src/bundle). */
function defaultPgextDir(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    dir = path.dirname(dir);
    if (path.basename(dir) !== "dist" && path.basename(dir) !== "src") return path.join(dir, "pgext");
  }
  return path.resolve("pgext");
}

async function installedMajors(pgRoot: string): Promise<number[]> {
  const majors: number[] = [];
  let entries: string[];
  try {
    entries = await readdir(pgRoot);
  } catch {
    entries = [];
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      await access(path.join(pgRoot, entry, "bin", "postgres"), constants.X_OK);
      majors.push(Number(entry));
    } catch {
      // a directory without a server (client-only package)
    }
  }
  return majors.sort((a, b) => a - b);
}

export async function compileBundleOptions(options: BundleOptions = {}): Promise<CompiledBundleOptions> {
  const pgRoot = options.pgRoot ?? "/usr/lib/postgresql";
  const majors = options.majors ?? await installedMajors(pgRoot);
  if (majors.length === 0) {
    throw new BundleBuildError(`no PostgreSQL server under ${pgRoot}; install postgresql-15 (apt-get install postgresql-15 postgresql-server-dev-15)`);
  }
  for (const major of majors) {
    if (!Number.isInteger(major) || major < 10 || major > 99) {
      throw new BundleBuildError(`Postgres major ${major} is not a major version number such as 15 (--major)`);
    }
  }
  return {
    outDir: path.resolve(options.outDir ?? ".pgmesh/bundle"),
    majors,
    pgRoot,
    pgextDir: path.resolve(options.pgextDir ?? defaultPgextDir()),
    postgresUser: options.postgresUser ?? "postgres",
    log: options.log ?? (() => {}),
  };
}
