import os from "node:os";
import path from "node:path";
import type { BlobStoreOptions } from "../blob/index.js";
import type { PgBinaries } from "../pg/index.js";
import type { ComputeSpec } from "./compute-spec.js";

export interface ComputeCtlOptions {
  /** PGDATA (-D); wiped and laid down afresh on every start. */
  readonly pgdata: string;
  /** Postgres programs (-b names the postgres binary; its directory is used). */
  readonly binaries: PgBinaries;
  /** A spec to start with (-S); without one the compute waits in configuration_pending. */
  readonly spec?: ComputeSpec;
  /** Maintenance connection URI (-C); default cloud_admin@127.0.0.1:<pg port>/postgres. */
  readonly connstr?: string;
  /** Postgres port when the spec names none; 0 (default): the connstr's port, else a free one. */
  readonly pgPort?: number;
  /** Postgres listen_addresses (default 127.0.0.1). */
  readonly pgListenAddresses?: string;
  /** Where initdb templates are kept (default: .pgmesh-initdb-templates next to PGDATA). */
  readonly templateRoot?: string;
  /** The Unix user Postgres runs as (default: postgres when root). */
  readonly osUser?: string;
  /** pg_stat_activity poll interval (default 1 000). */
  readonly activityPollMs?: number;
  /** How long Postgres may take to become ready (default 60 000). */
  readonly startTimeoutMs?: number;
  /** How long fetching saved files from Epufs may take before starting without them (default 10 000). */
  readonly savedFilesTimeoutMs?: number;
  /** Parallel object downloads of a PGDATA snapshot (default 8). */
  readonly snapshotConcurrency?: number;
  /** S3 settings for snapshot storage URLs (from the standard AWS environment). */
  readonly blobStoreOptions?: BlobStoreOptions;
  /** Names this compute in a timeline's generation claims (-i); default host name + process id. */
  readonly computeId?: string;
  /** Timeline source: the most committed work a crash may lose, in ms; WAL is shipped at least 4 times as often (default 1 000). */
  readonly rpoMs?: number;
  /** Timeline source: an online snapshot is taken once this much WAL was shipped since the last snapshot (default 256 MiB). */
  readonly snapshotWalBytes?: number;
  /** Timeline source: past this much WAL not yet in the store (it is down), new transactions are read-only until shipping catches up (default 1 GiB). */
  readonly maxUnshippedWalBytes?: number;
}

export interface CompiledComputeCtlOptions {
  readonly pgdata: string;
  readonly binaries: PgBinaries;
  readonly spec: ComputeSpec | undefined;
  readonly connstr: URL | undefined;
  readonly pgPort: number;
  readonly pgListenAddresses: string;
  readonly templateRoot: string;
  readonly osUser: string;
  readonly activityPollMs: number;
  readonly startTimeoutMs: number;
  readonly savedFilesTimeoutMs: number;
  readonly snapshotConcurrency: number;
  readonly blobStoreOptions: BlobStoreOptions;
  readonly computeId: string;
  readonly rpoMs: number;
  readonly snapshotWalBytes: number;
  readonly maxUnshippedWalBytes: number;
}

/** Validates and defaults ComputeCtlOptions; throws RangeError/TypeError naming the option. */
export function compileComputeCtlOptions(options: ComputeCtlOptions): CompiledComputeCtlOptions {
  if (!path.isAbsolute(options.pgdata)) throw new TypeError(`pgdata "${options.pgdata}" must be an absolute path (-D)`);
  const pgdata = path.normalize(options.pgdata).replace(/\/+$/, "");
  if (pgdata === "" || pgdata === "/") throw new TypeError("pgdata must not be / (-D); it is wiped on every start");
  let connstr: URL | undefined;
  if (options.connstr !== undefined) {
    try {
      connstr = new URL(options.connstr);
    } catch {
      throw new TypeError(`connstr "${options.connstr}" is not a postgresql:// URI (-C)`);
    }
    if (connstr.protocol !== "postgresql:" && connstr.protocol !== "postgres:") {
      throw new TypeError(`connstr "${options.connstr}" is not a postgresql:// URI (-C)`);
    }
  }
  return {
    pgdata,
    binaries: options.binaries,
    spec: options.spec,
    connstr,
    pgPort: port("pgPort (--pg-port)", options.pgPort ?? 0),
    pgListenAddresses: options.pgListenAddresses ?? "127.0.0.1",
    templateRoot: options.templateRoot ?? path.join(path.dirname(pgdata), ".pgmesh-initdb-templates"),
    osUser: options.osUser ?? "postgres",
    activityPollMs: positive("activityPollMs", options.activityPollMs ?? 1_000),
    startTimeoutMs: positive("startTimeoutMs", options.startTimeoutMs ?? 60_000),
    savedFilesTimeoutMs: positive("savedFilesTimeoutMs", options.savedFilesTimeoutMs ?? 10_000),
    snapshotConcurrency: positive("snapshotConcurrency", options.snapshotConcurrency ?? 8),
    blobStoreOptions: options.blobStoreOptions ?? {},
    computeId: options.computeId || `${os.hostname()}-${process.pid}`,
    rpoMs: positive("rpoMs (--rpo-ms)", options.rpoMs ?? 1_000),
    snapshotWalBytes: positive("snapshotWalBytes (--snapshot-wal-bytes)", options.snapshotWalBytes ?? 256 * 1024 * 1024),
    maxUnshippedWalBytes: positive("maxUnshippedWalBytes (--max-unshipped-wal-bytes)", options.maxUnshippedWalBytes ?? 1024 * 1024 * 1024),
  };
}

function port(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 0 || value > 65535) throw new RangeError(`${name} ${value} is not an integer in 0..65535`);
  return value;
}

function positive(name: string, value: number): number {
  if (!Number.isInteger(value) || value <= 0) throw new RangeError(`${name} must be a positive integer, got ${value}`);
  return value;
}
