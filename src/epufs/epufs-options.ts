import { compileAllowedPaths, defaultAllowedPaths, type AllowedPaths } from "./allowed-paths.js";
import { EpufsOptionsError } from "./epufs-errors.js";
import { checkPgdataPathPattern } from "./pgdata-path.js";

export interface EpufsOptions {
  /** Largest file a put may store (--max-file-bytes); default 100 MiB. */
  readonly maxFileBytes?: number;
  /** Most bytes all files of one endpoint may take together (--endpoint-quota-bytes); default 1 GiB. */
  readonly endpointQuotaBytes?: number;
  /** PGDATA paths a put may store (--allowed-paths); "*" matches within one segment. */
  readonly allowedPaths?: readonly string[];
}

export interface CompiledEpufsOptions {
  readonly maxFileBytes: number;
  readonly endpointQuotaBytes: number;
  readonly allowedPaths: AllowedPaths;
}

export const defaultMaxFileBytes = 100 * 1024 * 1024;
export const defaultEndpointQuotaBytes = 1024 * 1024 * 1024;

/** Validates and defaults EpufsOptions; throws EpufsOptionsError naming the flag. */
export function compileEpufsOptions(options: EpufsOptions = {}): CompiledEpufsOptions {
  const maxFileBytes = positiveInteger(options.maxFileBytes, defaultMaxFileBytes, "--max-file-bytes");
  const endpointQuotaBytes = positiveInteger(
    options.endpointQuotaBytes,
    defaultEndpointQuotaBytes,
    "--endpoint-quota-bytes",
  );
  const patterns = options.allowedPaths && options.allowedPaths.length > 0 ? options.allowedPaths : defaultAllowedPaths;
  for (const pattern of patterns) {
    const problem = checkPgdataPathPattern(pattern);
    if (problem) throw new EpufsOptionsError("--allowed-paths", `entry ${JSON.stringify(pattern)} ${problem}`);
  }
  return { maxFileBytes, endpointQuotaBytes, allowedPaths: compileAllowedPaths(patterns) };
}

function positiveInteger(value: number | undefined, fallback: number, flag: string): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new EpufsOptionsError(flag, `must be a positive whole number of bytes, got ${value}`);
  }
  return value;
}
