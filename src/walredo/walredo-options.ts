import type { Logger } from "pino";
import { MAX_RECORD_BYTES } from "./redo-protocol.js";

/** Resource limits applied to every walredo process (prlimit). */
export interface RedoProcessLimits {
  readonly addressSpaceBytes?: number;
  readonly cpuSeconds?: number;
  readonly openFiles?: number;
  readonly fileSizeBytes?: number;
}

/** How the WalRedo service runs its processes; every field is optional. */
export interface WalRedoOptions {
  /** Directory of `bundle --out DIR`; undefined: Initdb uses the system binaries, Redo is unavailable. */
  readonly bundleDir?: string;
  /** Postgres major versions served, 15 and later (default [15]). */
  readonly pgMajors?: readonly number[];
  /** A process with nothing in flight for this long is killed (default 180 000). */
  readonly idleTimeoutMs?: number;
  /** A request that takes longer kills its process (default 60 000). */
  readonly requestTimeoutMs?: number;
  /** Processes over all tenants, counted from spawn until their exit is seen (default 32). */
  readonly maxProcesses?: number;
  /** At the maxProcesses cap, how long a request that needs a new process waits for one to exit (default 10 000). */
  readonly queueTimeoutMs?: number;
  /** Processes of one tenant (default 4). */
  readonly maxProcessesPerTenant?: number;
  /** Requests in flight on one process before the tenant gets another (default 8). */
  readonly pipelineDepth?: number;
  /** Unprivileged account the processes run as (default "postgres" when root). */
  readonly user?: string;
  /** chroot into the bundle (default: when running as root). */
  readonly chroot?: boolean;
  /** Host directory for per-process scratch clusters (default os.tmpdir()). */
  readonly scratchRoot?: string;
  readonly limits?: RedoProcessLimits;
  /** Largest single record accepted (default 16 MiB). */
  readonly maxRecordBytes?: number;
  /** Most records in one request (default 100 000). */
  readonly maxRecordsPerRequest?: number;
  readonly logger: Logger;
}

export interface CompiledWalRedoOptions {
  readonly bundleDir: string | undefined;
  readonly pgMajors: readonly number[];
  readonly idleTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly maxProcesses: number;
  readonly queueTimeoutMs: number;
  readonly maxProcessesPerTenant: number;
  readonly pipelineDepth: number;
  readonly user: string;
  readonly chroot: boolean;
  readonly scratchRoot: string | undefined;
  readonly limits: Required<RedoProcessLimits>;
  readonly maxRecordBytes: number;
  readonly maxRecordsPerRequest: number;
  readonly logger: Logger;
}

/** A WalRedoOptions value that cannot work, with the option named. */
export class WalRedoOptionsError extends Error {
  constructor(option: string, detail: string) {
    super(`${option}: ${detail}`);
    this.name = "WalRedoOptionsError";
  }
}

function positiveInt(option: string, value: number | undefined, fallback: number): number {
  const v = value ?? fallback;
  if (!Number.isSafeInteger(v) || v <= 0) throw new WalRedoOptionsError(option, `${value} is not a positive integer`);
  return v;
}

const DEFAULT_LIMITS: Required<RedoProcessLimits> = {
  addressSpaceBytes: 1024 * 1024 * 1024,
  cpuSeconds: 3600,
  openFiles: 256,
  fileSizeBytes: 1024 * 1024 * 1024,
};

/** Validates and defaults WalRedoOptions in one place. */
export function compileWalRedoOptions(options: WalRedoOptions): CompiledWalRedoOptions {
  const maxProcesses = positiveInt("maxProcesses (--max-processes)", options.maxProcesses, 32);
  const maxProcessesPerTenant = positiveInt("maxProcessesPerTenant (--max-processes-per-tenant)", options.maxProcessesPerTenant, 4);
  if (maxProcessesPerTenant > maxProcesses) {
    throw new WalRedoOptionsError("maxProcessesPerTenant (--max-processes-per-tenant)", `${maxProcessesPerTenant} exceeds maxProcesses ${maxProcesses}`);
  }
  const pgMajors = options.pgMajors ?? [15];
  if (pgMajors.length === 0 || pgMajors.some((m) => !Number.isInteger(m) || m < 15)) {
    throw new WalRedoOptionsError("pgMajors", `${JSON.stringify(pgMajors)} must list Postgres major versions >= 15 (requests are validated in the WAL record format of 15, whose image flags 14 does not share)`);
  }
  const maxRecordBytes = positiveInt("maxRecordBytes", options.maxRecordBytes, 16 * 1024 * 1024);
  if (maxRecordBytes > MAX_RECORD_BYTES) {
    throw new WalRedoOptionsError("maxRecordBytes", `${maxRecordBytes} exceeds ${MAX_RECORD_BYTES}, the largest record a walredo process accepts`);
  }
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  for (const [name, value] of Object.entries(limits)) positiveInt(`limits.${name}`, value, 1);
  return {
    bundleDir: options.bundleDir,
    pgMajors,
    idleTimeoutMs: positiveInt("idleTimeoutMs (--idle-timeout-ms)", options.idleTimeoutMs, 180_000),
    requestTimeoutMs: positiveInt("requestTimeoutMs (--request-timeout-ms)", options.requestTimeoutMs, 60_000),
    maxProcesses,
    queueTimeoutMs: positiveInt("queueTimeoutMs (--queue-timeout-ms)", options.queueTimeoutMs, 10_000),
    maxProcessesPerTenant,
    pipelineDepth: positiveInt("pipelineDepth", options.pipelineDepth, 8),
    user: options.user ?? "postgres",
    chroot: options.chroot ?? (process.getuid?.() ?? 0) === 0,
    scratchRoot: options.scratchRoot,
    limits,
    maxRecordBytes,
    maxRecordsPerRequest: positiveInt("maxRecordsPerRequest", options.maxRecordsPerRequest, 100_000),
    logger: options.logger,
  };
}
