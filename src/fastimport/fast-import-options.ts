import os from "node:os";
import path from "node:path";
import { systemPgBinaries, type PgBinaries } from "../pg/index.js";
import { FastImportOptionsError } from "./fast-import-errors.js";
import { parseSourceConnection, type SourceConnection } from "./source-connection.js";

export interface FastImportOptions {
  /** libpq URI of the source (postgresql://user:password@host:port/dbname). */
  readonly source: string;
  /** Password when the URI carries none (the caller's PGPASSWORD). */
  readonly sourcePassword?: string;
  /** Absolute; must be empty or absent. PGDATA and the dump live here. */
  readonly workdir: string;
  /** Parallel pg_dump / pg_restore / VACUUM jobs; default: the CPU count. */
  readonly jobs?: number;
  /** Memory the local Postgres may use, in MiB; default: a quarter of the machine's. */
  readonly memoryMb?: number;
  /** Databases to bring across; default: the one the URI names. */
  readonly databases?: readonly string[];
  /** Roles to bring across (without SUPERUSER, REPLICATION, BYPASSRLS); default: none. */
  readonly roles?: readonly string[];
  /** Every database that is not a template and every role, instead of the lists. */
  readonly wholeInstance?: boolean;
  /** initdb, postgres, pg_dump, pg_restore, pg_dumpall, pg_controldata; default Debian's. */
  readonly pgBinaries?: PgBinaries;
  /** Files uploaded at once; default 16. */
  readonly uploadConcurrency?: number;
  /** Bootstrap superuser of the snapshot; default cloud_admin (what computes connect as). */
  readonly superuser?: string;
}

export type Selection =
  | { readonly wholeInstance: false; readonly databases: readonly string[]; readonly roles: readonly string[] }
  | { readonly wholeInstance: true };

export interface CompiledFastImportOptions {
  readonly source: SourceConnection;
  readonly workdir: string;
  readonly jobs: number;
  readonly memoryMb: number;
  readonly selection: Selection;
  readonly pgBinaries: PgBinaries;
  readonly uploadConcurrency: number;
  readonly superuser: string;
}

const maxJobs = 64;
const minMemoryMb = 64;

/** Validates and defaults; throws FastImportOptionsError or InvalidSourceError. */
export function compileFastImportOptions(options: FastImportOptions): CompiledFastImportOptions {
  const source = parseSourceConnection(options.source, options.sourcePassword);
  if (!path.isAbsolute(options.workdir)) {
    throw new FastImportOptionsError("--workdir", `${JSON.stringify(options.workdir)} is not an absolute path`);
  }
  const jobs = options.jobs ?? Math.min(os.availableParallelism(), maxJobs);
  checkInteger("--jobs", jobs, 1, maxJobs);
  const memoryMb = options.memoryMb ?? Math.max(minMemoryMb, Math.floor(os.totalmem() / 4 / 2 ** 20));
  checkInteger("--memory-mb", memoryMb, minMemoryMb, 2 ** 24);
  const uploadConcurrency = options.uploadConcurrency ?? 16;
  checkInteger("--upload-concurrency", uploadConcurrency, 1, 256);
  const superuser = options.superuser ?? "cloud_admin";
  return {
    source,
    workdir: path.resolve(options.workdir),
    jobs,
    memoryMb,
    selection: compileSelection(options, source, superuser),
    pgBinaries: options.pgBinaries ?? systemPgBinaries(15),
    uploadConcurrency,
    superuser,
  };
}

function compileSelection(options: FastImportOptions, source: SourceConnection, superuser: string): Selection {
  if (options.wholeInstance) {
    if (options.databases?.length || options.roles?.length) {
      throw new FastImportOptionsError("--whole-instance", "takes every database and role; leave out --databases and --roles");
    }
    return { wholeInstance: true };
  }
  const databases = options.databases?.length ? [...options.databases] : source.database ? [source.database] : [];
  if (databases.length === 0) {
    throw new FastImportOptionsError("--databases", "no database chosen: name one in the --source URI, list them with --databases, or use --whole-instance");
  }
  checkNames("--databases", databases, (name) =>
    name === "template0" || name === "template1" ? "is a template database, which is never imported" : undefined,
  );
  const roles = [...(options.roles ?? [])];
  checkNames("--roles", roles, (name) =>
    name.startsWith("pg_")
      ? "is a predefined role; every cluster has it"
      : name === superuser
        ? "is the snapshot's own superuser; it exists already"
        : undefined,
  );
  return { wholeInstance: false, databases, roles };
}

function checkNames(flag: string, names: readonly string[], problemOf: (name: string) => string | undefined): void {
  const seen = new Set<string>();
  for (const name of names) {
    if (name === "") throw new FastImportOptionsError(flag, "holds an empty name");
    if (Buffer.byteLength(name) > 63) throw new FastImportOptionsError(flag, `${JSON.stringify(name)} is longer than 63 bytes`);
    if (seen.has(name)) throw new FastImportOptionsError(flag, `${JSON.stringify(name)} is listed twice`);
    const problem = problemOf(name);
    if (problem) throw new FastImportOptionsError(flag, `${JSON.stringify(name)} ${problem}`);
    seen.add(name);
  }
}

function checkInteger(flag: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new FastImportOptionsError(flag, `${value} is not a whole number from ${min} to ${max}`);
  }
}
