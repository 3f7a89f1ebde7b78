import { execa } from "execa";
import { checkPgBinaries, pgProgram, type PgBinaries } from "../pg/index.js";
import { FastImportOptionsError } from "./fast-import-errors.js";

/** The Postgres programs in `binDir` (--pg-bin), with the major version `postgres -V` reports. */
export async function pgBinariesAt(binDir: string): Promise<PgBinaries> {
  await checkPgBinaries({ major: 0, binDir }).catch((error: Error) => {
    throw new FastImportOptionsError("--pg-bin", error.message);
  });
  const { stdout } = await execa(pgProgram({ major: 0, binDir }, "postgres"), ["-V"]);
  const match = /\(PostgreSQL\) (\d+)/.exec(stdout);
  if (!match) throw new FastImportOptionsError("--pg-bin", `${binDir}/postgres -V printed ${JSON.stringify(stdout)}, not a PostgreSQL version`);
  return { major: Number(match[1]), binDir };
}
