import type { FallbackHandler } from "../server/server-options.js";
import type { ComputeSpec } from "./compute-spec.js";

/** What compute-ctl needs from the extension-loading library (src/computectl/extensions). */
export interface ComputeExtensions {
  /** Before Postgres starts, in parallel with laying down PGDATA: control files and preloaded bundles. */
  prepare(spec: ComputeSpec, signal: AbortSignal): Promise<void>;
  /** Libraries to preload (the compute hook first) and further postgresql.conf settings. */
  postgresSettings(spec: ComputeSpec, computeCtlAddr: string): {
    readonly preloadLibraries: readonly string[];
    readonly settings: Readonly<Record<string, string>>;
  };
  /** Once Postgres runs: start background downloads. */
  afterRunning(spec: ComputeSpec): void;
  /** Makes an extension's (or library's) files present. */
  ensure(name: string, isLibrary: boolean): Promise<{ readonly extension: string; readonly alreadyPresent: boolean }>;
  /** HTTP route POST /extension_server/<name> for the compute hook. */
  readonly httpHandler: FallbackHandler;
  /** Stops background work. */
  close(): Promise<void>;
}
