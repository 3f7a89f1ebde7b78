import { createHash } from "node:crypto";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { Code, ConnectError } from "@connectrpc/connect";
import { createExtensionStoreDownloader, type BundleDownloader } from "./bundle-downloader.js";
import { DownloadQueue, type DownloadPriority } from "./download-queue.js";
import {
  ExtensionDownloadError,
  ExtensionFilesClosedError,
  ExtensionNotAvailableError,
  PreloadLibraryMissingError,
} from "./extension-errors.js";
import {
  compileExtensionFilesOptions,
  type AllowedExtension,
  type CompiledExtensionFilesOptions,
  type ExtensionFilesEvent,
  type ExtensionFilesOptions,
} from "./extension-files-options.js";
import { checkExtensionName, libraryNameOf } from "./extension-names.js";
import { installBundle } from "./install-bundle.js";
import { placeOwnedFiles } from "./install-file-owners.js";
import {
  extensionDir,
  extensionFilesPresent,
  installedSha256,
  libraryFilePresent,
  markInstalled,
  markPending,
  writeFileAtomic,
} from "./install-layout.js";
import { retryWithBackoff } from "../../retry/index.js";

/** Milliseconds of the start-up extension phase, for compute-ctl's metrics. */
export interface ExtensionStartupTimings {
  /** Until every allowed extension's control files were written. */
  readonly controlFilesMs: number;
  /** Until the bundles of every preload library were installed. */
  readonly preloadDownloadsMs: number;
  /** The whole of prepare(). */
  readonly totalMs: number;
  /** Extensions whose control files were written (those already installed are skipped). */
  readonly controlFileExtensions: number;
  /** Bundles fetched for preload libraries. */
  readonly preloadBundles: number;
}

export interface EnsureOptions {
  /** `name` is a library (LOAD), looked up in library_index. */
  readonly isLibrary?: boolean;
  /** Stops waiting (the download itself goes on for others). */
  readonly signal?: AbortSignal;
}

export interface EnsureResult {
  /** The extension whose files are now present. */
  readonly extension: string;
  /** True when nothing had to be fetched. */
  readonly alreadyPresent: boolean;
}

/** How the background downloads ended. */
export interface BackgroundSummary {
  readonly installed: readonly string[];
  readonly failed: readonly { readonly extension: string; readonly error: ConnectError }[];
}

const retryableCodes = new Set([Code.Unavailable, Code.DeadlineExceeded, Code.Internal, Code.Unknown, Code.Aborted, Code.DataLoss, Code.ResourceExhausted]);

/**
 * The extension files of one compute: lays down control files and preload
 * bundles at start-up (prepare), fetches a bundle when a session needs it
 * (ensure), and fetches the rest in the background once Postgres runs
 * (startBackground). Concurrent requests for one bundle share one download;
 * failed downloads are retried with bounded exponential backoff; bytes are
 * checked against the spec's sha256 before any file appears.
 */
export class ExtensionFiles {
  readonly options: CompiledExtensionFilesOptions;
  private readonly installed = new Map<string, string>();
  /** prepare()'s control-file writes by extension; a download waits for its own so the pending mark is not written after it. */
  private readonly laidDown = new Map<string, Promise<boolean>>();
  private readonly queue: DownloadQueue;
  private readonly abort = new AbortController();
  private readonly download: BundleDownloader | undefined;
  private background: Promise<BackgroundSummary> | undefined;

  constructor(options: ExtensionFilesOptions) {
    this.options = compileExtensionFilesOptions(options);
    const store = this.options.extensionStore;
    this.download = store && createExtensionStoreDownloader({ addr: store.addr, downloadToken: store.token, timeoutMs: this.options.downloadTimeoutMs });
    this.queue = new DownloadQueue(this.options.backgroundConcurrency, (name, priority) => this.runDownload(name, priority));
  }

  /**
   * Start-up, before Postgres runs and in parallel with laying down PGDATA
   * (it never touches PGDATA): writes the control files of every allowed
   * extension (atomically, with a pending mark until its bundle is
   * installed) and installs the bundles of every preload library, then
   * checks that each preload library is present.
   */
  async prepare(): Promise<ExtensionStartupTimings> {
    const start = performance.now();
    for (const extension of this.options.allowed.values()) this.laidDown.set(extension.name, this.layDownControlFiles(extension));
    const preload = [
      ...new Set(this.options.preloadLibraries.flatMap((library) => this.options.libraryIndex.get(library) ?? [])),
    ];
    const [control, downloads] = await Promise.allSettled([
      allSettledOrFirstError([...this.laidDown.values()]).then((written) => ({ ms: performance.now() - start, written: written.filter(Boolean).length })),
      Promise.all(preload.map((name) => this.fetch(name, "on_demand", new Set()))).then(() => performance.now() - start),
    ]);
    if (control.status === "rejected") throw control.reason;
    if (downloads.status === "rejected") throw downloads.reason;
    for (const library of this.options.preloadLibraries) {
      if (!(await libraryFilePresent(this.options.dirs, library))) throw new PreloadLibraryMissingError(library, this.options.dirs.pkglibdir);
    }
    return {
      controlFilesMs: control.value.ms,
      preloadDownloadsMs: downloads.value,
      totalMs: performance.now() - start,
      controlFileExtensions: control.value.written,
      preloadBundles: preload.length,
    };
  }

  /**
   * Makes the files of an extension (or of the extension providing a
   * library) present and resolves when they are, fetching the extensions it
   * requires first. A name the spec does not allow is fine when Postgres
   * ships its files; otherwise it is ExtensionNotAvailableError
   * (PERMISSION_DENIED). InvalidExtensionNameError for a malformed name,
   * ExtensionDownloadError when every attempt failed.
   */
  async ensure(name: string, options: EnsureOptions = {}): Promise<EnsureResult> {
    const isLibrary = options.isLibrary ?? false;
    const bare = isLibrary ? libraryNameOf(name) : checkExtensionName(name);
    const extension = isLibrary ? this.options.libraryIndex.get(bare) : this.options.allowed.has(bare) ? bare : undefined;
    if (extension === undefined) {
      const shipped = isLibrary ? await libraryFilePresent(this.options.dirs, bare) : await extensionFilesPresent(this.options.dirs, bare);
      if (shipped) return { extension: bare, alreadyPresent: true };
      throw new ExtensionNotAvailableError(bare, isLibrary ? "library" : "extension");
    }
    if (this.isInstalled(extension) && this.requiredInstalled(extension)) return { extension, alreadyPresent: true };
    await untilAborted(this.fetch(extension, "on_demand", new Set()), options.signal);
    return { extension, alreadyPresent: false };
  }

  /**
   * After Postgres runs: fetches every allowed extension not installed yet,
   * those `listInstalled` reports (extensions created in any database) first.
   * Resolves when all are done; never rejects (failures are in the summary
   * and the log). Calling it again returns the same promise.
   */
  startBackground(listInstalled: () => Promise<readonly string[]>): Promise<BackgroundSummary> {
    this.background ??= this.runBackground(listInstalled);
    return this.background;
  }

  /** The extensions whose bundles are installed. */
  installedExtensions(): string[] {
    return [...this.installed.keys()];
  }

  /** Stops: aborts running downloads (their staging files are removed), refuses new ones. */
  async close(): Promise<void> {
    this.abort.abort(new ExtensionFilesClosedError("*"));
    this.queue.close((name) => new ExtensionFilesClosedError(name));
    await this.background;
  }

  private isInstalled(name: string): boolean {
    return this.installed.get(name) === this.options.allowed.get(name)?.sha256;
  }

  private requiredInstalled(name: string, seen = new Set<string>()): boolean {
    seen.add(name);
    return this.allowedRequires(name).every(
      (required) => seen.has(required) || (this.isInstalled(required) && this.requiredInstalled(required, seen)),
    );
  }

  private allowedRequires(name: string): string[] {
    return (this.options.allowed.get(name)?.requires ?? []).filter((required) => this.options.allowed.has(required));
  }

  /** Fetches the extensions `name` requires, then `name`; `visiting` breaks require cycles. */
  private async fetch(name: string, priority: DownloadPriority, visiting: Set<string>): Promise<void> {
    visiting.add(name);
    await Promise.all(
      this.allowedRequires(name)
        .filter((required) => !visiting.has(required))
        .map((required) => this.fetch(required, priority, visiting)),
    );
    if (!this.isInstalled(name)) await this.queue.request(name, priority);
  }

  /** Returns false when the bundle was already installed (nothing written). */
  private async layDownControlFiles(extension: AllowedExtension): Promise<boolean> {
    if ((await installedSha256(this.options.dirs, extension.name)) === extension.sha256) {
      this.installed.set(extension.name, extension.sha256);
      return false;
    }
    await markPending(this.options.dirs, extension.name, extension.sha256);
    await placeOwnedFiles(
      this.options.dirs,
      { extension: extension.name, bundleSha256: extension.sha256 },
      Object.entries(extension.controlData).map(([file, content]) => {
        const target = path.join(extensionDir(this.options.dirs), file);
        return { path: `share/extension/${file}`, target, sha256: sha256OfText(content), put: () => writeFileAtomic(target, content) };
      }),
    );
    return true;
  }

  private async runDownload(name: string, priority: DownloadPriority): Promise<void> {
    await this.laidDown.get(name)?.catch(() => undefined);
    if (this.isInstalled(name)) return;
    const { sha256 } = this.options.allowed.get(name)!;
    const signal = this.abort.signal;
    const emit = (event: ExtensionFilesEvent) => this.emit(event);
    let attempts = 0;
    try {
      await retryWithBackoff(
        async (attempt) => {
          attempts = attempt;
          emit({ type: "download_started", extension: name, sha256, priority, attempt });
          const start = performance.now();
          const { bytes } = await installBundle(this.download!(sha256, signal), {
            extension: name,
            sha256,
            dirs: this.options.dirs,
            maxBundleBytes: this.options.maxBundleBytes,
            signal,
          });
          await markInstalled(this.options.dirs, name, sha256);
          this.installed.set(name, sha256);
          emit({ type: "installed", extension: name, sha256, priority, bytes, durationMs: performance.now() - start });
        },
        this.options,
        {
          signal,
          isRetryable: (error) => retryableCodes.has(ConnectError.from(error).code),
          onRetry: (attempt, error) =>
            emit({ type: "download_failed", extension: name, sha256, priority, attempt, error: ConnectError.from(error), willRetry: true }),
        },
      );
    } catch (error) {
      if (signal.aborted) throw new ExtensionFilesClosedError(name);
      const last = ConnectError.from(error);
      emit({ type: "download_failed", extension: name, sha256, priority, attempt: attempts, error: last, willRetry: false });
      throw new ExtensionDownloadError(name, sha256, attempts, last);
    }
  }

  private async runBackground(listInstalled: () => Promise<readonly string[]>): Promise<BackgroundSummary> {
    let inDatabases: readonly string[] = [];
    try {
      inDatabases = await listInstalled();
    } catch (error) {
      this.options.logger.warn({ err: error }, "could not list the extensions installed in the databases; fetching all in name order");
    }
    const first = [...new Set(inDatabases.filter((name) => this.options.allowed.has(name)))];
    const rest = [...this.options.allowed.keys()].filter((name) => !first.includes(name)).sort();
    const order: [string, DownloadPriority][] = [
      ...first.map((name): [string, DownloadPriority] => [name, "installed"]),
      ...rest.map((name): [string, DownloadPriority] => [name, "background"]),
    ];
    const results = await Promise.allSettled(order.map(([name, priority]) => this.fetch(name, priority, new Set())));
    const failed = results.flatMap((result, i) =>
      result.status === "rejected" && !(result.reason instanceof ExtensionFilesClosedError)
        ? [{ extension: order[i]![0], error: ConnectError.from(result.reason) }]
        : [],
    );
    const installed = order.map(([name]) => name).filter((name) => this.isInstalled(name));
    this.options.logger.info({ installed: installed.length, failed: failed.length }, "background extension downloads done");
    return { installed, failed };
  }

  private emit(event: ExtensionFilesEvent): void {
    const logger = this.options.logger;
    if (event.type === "installed") {
      logger.info({ extension: event.extension, sha256: event.sha256, priority: event.priority, bytes: event.bytes, ms: Math.round(event.durationMs) }, "extension bundle installed");
    } else if (event.type === "download_failed") {
      logger.warn({ extension: event.extension, attempt: event.attempt, willRetry: event.willRetry, err: event.error }, "extension bundle download failed");
    } else {
      logger.debug({ extension: event.extension, priority: event.priority, attempt: event.attempt }, "extension bundle download started");
    }
    this.options.onEvent(event);
  }
}

/** Waits for every promise (none keeps writing after it returns), then rejects with the first failure, if any. */
async function allSettledOrFirstError<T>(promises: readonly Promise<T>[]): Promise<T[]> {
  const results = await Promise.allSettled(promises);
  const failed = results.find((result) => result.status === "rejected");
  if (failed !== undefined) throw failed.reason;
  return results.map((result) => (result as PromiseFulfilledResult<T>).value);
}

function sha256OfText(text: string): string {
  return createHash("sha256").update(text, "utf8").digest("hex");
}

/** Waits for `promise`, or rejects with the signal's reason when it aborts first. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return promise;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}
