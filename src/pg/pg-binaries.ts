import { access, constants } from "node:fs/promises";
import path from "node:path";

/** Where the programs of one Postgres major version live. */
export interface PgBinaries {
  readonly major: number;
  readonly binDir: string;
}

/** Absolute path of one Postgres program, e.g. bin(b, "initdb"). */
export function pgProgram(binaries: PgBinaries, program: string): string {
  return path.join(binaries.binDir, program);
}

/** Debian's layout: /usr/lib/postgresql/<major>/bin. */
export function systemPgBinaries(major = 15): PgBinaries {
  return { major, binDir: `/usr/lib/postgresql/${major}/bin` };
}

export class PgBinariesNotFoundError extends Error {
  constructor(readonly binDir: string) {
    super(`no postgres binary in ${binDir}; install postgresql-15 or build the bundle (bundle --out DIR)`);
    this.name = "PgBinariesNotFoundError";
  }
}

/** Resolves to the binaries when `postgres` is there and executable. */
export async function checkPgBinaries(binaries: PgBinaries): Promise<PgBinaries> {
  try {
    await access(pgProgram(binaries, "postgres"), constants.X_OK);
    return binaries;
  } catch {
    throw new PgBinariesNotFoundError(binaries.binDir);
  }
}
