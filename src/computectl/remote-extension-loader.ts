import { Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "pino";
import type { PgBinaries } from "../pg/index.js";
import type { FallbackHandler } from "../server/index.js";
import type { ComputeExtensions } from "./compute-extensions.js";
import type { ComputeSpec } from "./compute-spec.js";
import {
  computeHookSettings,
  createExtensionServerRoute,
  ExtensionFiles,
  readPgInstallDirs,
  type BackgroundSummary,
  type EnsureOptions,
  type EnsureResult,
  type PgInstallDirs,
} from "./extensions/index.js";

export interface RemoteExtensionLoaderOptions {
  readonly binaries: PgBinaries;
  readonly logger: Logger;
  /** The install's sharedir/pkglibdir; default: asked from pg_config next to the binaries. */
  readonly dirs?: PgInstallDirs;
  /** How long CREATE EXTENSION / LOAD wait for a download (default 30 000). */
  readonly extensionTimeoutMs?: number;
}

/**
 * Extension loading for compute-ctl over src/computectl/extensions: one
 * ExtensionFiles per start (the spec's remote_extensions), the compute hook's
 * settings, its HTTP route, background downloads and EnsureExtension.
 */
export class RemoteExtensionLoader implements ComputeExtensions {
  #dirs: PgInstallDirs | undefined;
  #files: ExtensionFiles | undefined;
  #background: Promise<BackgroundSummary> | undefined;
  readonly httpHandler: FallbackHandler;

  constructor(private readonly options: RemoteExtensionLoaderOptions) {
    this.#dirs = options.dirs;
    this.httpHandler = createExtensionServerRoute({ ensure: (name, opts) => this.#ensure(name, opts) }, options.logger);
  }

  async prepare(spec: ComputeSpec, preloadLibraries: readonly string[]): Promise<void> {
    this.#dirs ??= await readPgInstallDirs(this.options.binaries);
    await this.#files?.close();
    this.#files = new ExtensionFiles({
      ...(spec.remoteExtensions ? { remoteExtensions: spec.remoteExtensions } : {}),
      ...(spec.extensionStore ? { extensionStore: spec.extensionStore } : {}),
      dirs: this.#dirs,
      preloadLibraries,
      logger: this.options.logger,
    });
    await this.#files.prepare();
  }

  postgresSettings(computeCtlAddr: string): { preloadLibraries: string[]; settings: Record<string, string> } {
    const { shared_preload_libraries: preload, ...settings } = computeHookSettings({
      computeCtlAddr,
      ...(this.options.extensionTimeoutMs !== undefined ? { extensionTimeoutMs: this.options.extensionTimeoutMs } : {}),
    });
    return { preloadLibraries: preload!.split(","), settings };
  }

  afterRunning(listInstalled: () => Promise<readonly string[]>): void {
    this.#background = this.#files?.startBackground(listInstalled);
  }

  /** Resolves when the current start's background downloads are done (undefined before any). */
  async backgroundDone(): Promise<BackgroundSummary | undefined> {
    return this.#background;
  }

  ensure(name: string, isLibrary: boolean): Promise<EnsureResult> {
    return this.#ensure(name, { isLibrary });
  }

  async close(): Promise<void> {
    await this.#files?.close();
  }

  #ensure(name: string, options?: EnsureOptions): Promise<EnsureResult> {
    if (!this.#files) throw new ConnectError("the compute has not started yet; extensions are available once it runs", Code.Unavailable);
    return this.#files.ensure(name, options);
  }
}
