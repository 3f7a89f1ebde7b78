import { writeFile } from "node:fs/promises";
import { pgProgram, type PgBinaries } from "../pg/index.js";
import { ToolFailedError } from "./fast-import-errors.js";
import { runPgTool } from "./run-pg-tool.js";
import type { SourceConnection } from "./source-connection.js";

/**
 * Leave out what does not carry between owners and servers: owners,
 * grants, publications, subscriptions, security labels and tablespaces.
 * (Event triggers have no flag in PostgreSQL 15; restoreDatabase drops them
 * from the archive's table of contents.)
 */
export const portabilityFlags = [
  "--no-owner",
  "--no-privileges",
  "--no-publications",
  "--no-subscriptions",
  "--no-security-labels",
  "--no-tablespaces",
] as const;

/** "finished item 3358 TABLE DATA public pgbench_accounts": one table's data is done. */
const tableDataDone = /finished item \d+ TABLE DATA /;
/** A table-of-contents line of an event trigger or of something attached to one. */
const eventTriggerEntry = /^\d+; \d+ \d+ (?:\S+ - )?EVENT TRIGGER /;

export interface ToolContext {
  readonly binaries: PgBinaries;
  readonly jobs: number;
  readonly workdir: string;
  readonly signal?: AbortSignal;
}

/** pg_dump --format directory --jobs N of one source database into `dir`. */
export async function dumpDatabase(
  context: ToolContext,
  source: SourceConnection,
  database: string,
  dir: string,
  onTableDone: () => void,
): Promise<void> {
  await runPgTool({
    phase: "dump",
    program: pgProgram(context.binaries, "pg_dump"),
    args: [
      "--format=directory",
      `--jobs=${context.jobs}`,
      `--file=${dir}`,
      "--no-sync",
      "--verbose",
      ...portabilityFlags,
      `--dbname=${source.uriFor(database)}`,
    ],
    target: source.redacted(database),
    env: source.childEnv(),
    workdir: context.workdir,
    onLine: (line) => tableDataDone.test(line) && onTableDone(),
    ...(context.signal ? { signal: context.signal } : {}),
  });
}

/** How many tables' data an archive holds, and its list without event triggers. */
export async function readArchiveList(context: ToolContext, dir: string): Promise<{ list: string; tables: number; eventTriggers: number }> {
  const toc = await runPgTool({
    phase: "restore",
    program: pgProgram(context.binaries, "pg_restore"),
    args: ["--list", dir],
    target: dir,
    workdir: context.workdir,
  });
  const lines = toc.split("\n");
  const kept = lines.filter((line) => !eventTriggerEntry.test(line));
  return {
    list: kept.join("\n"),
    tables: kept.filter((line) => /^\d+; \d+ \d+ TABLE DATA /.test(line)).length,
    eventTriggers: lines.length - kept.length,
  };
}

/** pg_restore --jobs N of an archive into a local database, stopping at the first error. */
export async function restoreDatabase(
  context: ToolContext,
  dir: string,
  listFile: string,
  list: string,
  targetUri: string,
  database: string,
  onTableDone: () => void,
): Promise<void> {
  await writeFile(listFile, list);
  await runPgTool({
    phase: "restore",
    program: pgProgram(context.binaries, "pg_restore"),
    args: [
      `--jobs=${context.jobs}`,
      "--exit-on-error",
      "--verbose",
      ...portabilityFlags,
      `--use-list=${listFile}`,
      `--dbname=${targetUri}`,
      dir,
    ],
    target: `the local database ${JSON.stringify(database)}`,
    workdir: context.workdir,
    onLine: (line) => tableDataDone.test(line) && onTableDone(),
    ...(context.signal ? { signal: context.signal } : {}),
  });
}

/**
 * pg_dumpall --roles-only from the source. A login that may not read
 * pg_authid (not a superuser) gets the roles without their passwords;
 * `warn` says so.
 */
export async function dumpRoles(context: ToolContext, source: SourceConnection, database: string, warn: (message: string) => void): Promise<string> {
  const run = (extra: string[]) =>
    runPgTool({
      phase: "roles",
      program: pgProgram(context.binaries, "pg_dumpall"),
      args: ["--roles-only", ...extra, `--dbname=${source.uriFor(database)}`],
      target: source.redacted(database),
      env: source.childEnv(),
      workdir: context.workdir,
      ...(context.signal ? { signal: context.signal } : {}),
    });
  try {
    return await run([]);
  } catch (error) {
    if (!(error instanceof ToolFailedError) || !error.errors.some((line) => /pg_authid/.test(line))) throw error;
    warn(`the source login ${JSON.stringify(source.user ?? "")} may not read pg_authid; roles are imported without their passwords`);
    return run(["--no-role-passwords"]);
  }
}
