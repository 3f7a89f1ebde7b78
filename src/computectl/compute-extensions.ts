import type { FallbackHandler } from "../server/index.js";
import type { ComputeSpec } from "./compute-spec.js";

/** What compute-ctl needs from extension loading (implemented by RemoteExtensionLoader). */
export interface ComputeExtensions {
  /** Before Postgres starts, in parallel with laying down PGDATA: control files and preloaded bundles. */
  prepare(spec: ComputeSpec, preloadLibraries: readonly string[], signal: AbortSignal): Promise<void>;
  /** Libraries to preload first (the compute hook) and further postgresql.conf settings. */
  postgresSettings(computeCtlAddr: string): {
    readonly preloadLibraries: readonly string[];
    readonly settings: Readonly<Record<string, string>>;
  };
  /** Once Postgres runs: background downloads, extensions installed in a database first. */
  afterRunning(listInstalled: () => Promise<readonly string[]>): void;
  /** Makes an extension's (or library's) files present. */
  ensure(name: string, isLibrary: boolean): Promise<{ readonly extension: string; readonly alreadyPresent: boolean }>;
  /** HTTP route POST /extension_server/<name> for the compute hook. */
  readonly httpHandler: FallbackHandler;
  /** Stops background work of the current start. */
  close(): Promise<void>;
}
