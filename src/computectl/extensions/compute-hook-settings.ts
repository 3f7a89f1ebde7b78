import { libraryNameOf } from "./extension-names.js";

/** The compute hook's library name (pgext/compute_hook). */
export const computeHookLibrary = "pgmesh_compute_hook";

export interface ComputeHookSettingsOptions {
  /** host:port of compute-ctl's HTTP/1.1 port, as the compute's Postgres reaches it (loopback). */
  readonly computeCtlAddr: string;
  /** How long CREATE EXTENSION / LOAD wait for compute-ctl (default 30 000 ms). */
  readonly extensionTimeoutMs?: number;
  /** The other shared_preload_libraries, in order; the hook is put first. */
  readonly sharedPreloadLibraries?: readonly string[];
}

/**
 * postgresql.conf settings the compute hook needs: shared_preload_libraries
 * starting with pgmesh_compute_hook, pgmesh.compute_ctl_addr and
 * pgmesh.extension_timeout_ms. Values are unquoted; quote them when writing
 * postgresql.conf.
 */
export function computeHookSettings(options: ComputeHookSettingsOptions): Record<string, string> {
  if (!/^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}$/.test(options.computeCtlAddr)) {
    throw new TypeError(`computeCtlAddr ${JSON.stringify(options.computeCtlAddr)} is not host:port (e.g. 127.0.0.1:7103)`);
  }
  const timeoutMs = options.extensionTimeoutMs ?? 30_000;
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) throw new RangeError(`extensionTimeoutMs must be a positive integer, got ${timeoutMs}`);
  const others = (options.sharedPreloadLibraries ?? []).map(libraryNameOf).filter((name) => name !== computeHookLibrary);
  return {
    shared_preload_libraries: [computeHookLibrary, ...new Set(others)].join(","),
    "pgmesh.compute_ctl_addr": options.computeCtlAddr,
    "pgmesh.extension_timeout_ms": String(timeoutMs),
  };
}
