import type { ConnectError } from "@connectrpc/connect";
import type { Logger } from "pino";
import { foreignFileReason, parseControlFile } from "../../extstore/index.js";
import type { RemoteExtensions, ServiceAddress } from "../compute-spec.js";
import { SpecError } from "../spec-error.js";
import { InvalidExtensionNameError } from "./extension-errors.js";
import type { DownloadPriority } from "./download-queue.js";
import { checkExtensionName, libraryNameOf } from "./extension-names.js";
import type { PgInstallDirs } from "./install-layout.js";

/** What happens to bundles, for logs and metrics. */
export type ExtensionFilesEvent =
  | { readonly type: "download_started"; readonly extension: string; readonly sha256: string; readonly priority: DownloadPriority; readonly attempt: number }
  | {
      readonly type: "download_failed";
      readonly extension: string;
      readonly sha256: string;
      readonly priority: DownloadPriority;
      readonly attempt: number;
      readonly error: ConnectError;
      readonly willRetry: boolean;
    }
  | {
      readonly type: "installed";
      readonly extension: string;
      readonly sha256: string;
      readonly priority: DownloadPriority;
      readonly bytes: number;
      readonly durationMs: number;
    };

export interface ExtensionFilesOptions {
  /** The spec's remote_extensions; absent: the compute uses only what Postgres ships. */
  readonly remoteExtensions?: RemoteExtensions;
  /** The ExtensionStore's host:port and the download token (spec pgmesh.extension_store); needed with remote_extensions. */
  readonly extensionStore?: ServiceAddress;
  /** The Postgres install the files go to (its sharedir and pkglibdir). */
  readonly dirs: PgInstallDirs;
  /**
   * Libraries Postgres loads before any session (shared_preload_libraries and
   * session_preload_libraries, "$libdir/x", "x.so" or "x"); prepare() fetches
   * the bundles providing them and checks that each is present.
   */
  readonly preloadLibraries?: readonly string[];
  readonly logger: Logger;
  /** Background downloads at a time (default 2); on-demand ones never wait for a slot. */
  readonly backgroundConcurrency?: number;
  /** Attempts per download (default 5), with exponential backoff between them. */
  readonly maxAttempts?: number;
  /** First backoff (default 250 ms), doubling up to maxBackoffMs (default 8 000 ms); each wait is jittered down to half. */
  readonly initialBackoffMs?: number;
  readonly maxBackoffMs?: number;
  /** Deadline of one DownloadBundle call (default 120 000 ms). */
  readonly downloadTimeoutMs?: number;
  /** Largest bundle accepted (default 1 GiB). */
  readonly maxBundleBytes?: number;
  /** Called on every download event (after it is logged). */
  readonly onEvent?: (event: ExtensionFilesEvent) => void;
}

/** One extension the compute may use. */
export interface AllowedExtension {
  readonly name: string;
  readonly sha256: string;
  /** Control file name -> content, laid down at start-up. */
  readonly controlData: Readonly<Record<string, string>>;
  /** Extensions named in the control file's `requires`. */
  readonly requires: readonly string[];
}

export interface CompiledExtensionFilesOptions {
  /** By name, in the spec's order (public, then custom). */
  readonly allowed: ReadonlyMap<string, AllowedExtension>;
  /** Library -> allowed extension providing it. */
  readonly libraryIndex: ReadonlyMap<string, string>;
  readonly extensionStore: ServiceAddress | undefined;
  readonly dirs: PgInstallDirs;
  readonly preloadLibraries: readonly string[];
  readonly logger: Logger;
  readonly backgroundConcurrency: number;
  readonly maxAttempts: number;
  readonly initialBackoffMs: number;
  readonly maxBackoffMs: number;
  readonly downloadTimeoutMs: number;
  readonly maxBundleBytes: number;
  readonly onEvent: (event: ExtensionFilesEvent) => void;
}

/**
 * Validates and defaults ExtensionFilesOptions. A bad remote_extensions is a
 * SpecError (INVALID_ARGUMENT naming the field); a bad number a RangeError.
 */
export function compileExtensionFilesOptions(options: ExtensionFilesOptions): CompiledExtensionFilesOptions {
  const remote = options.remoteExtensions;
  const allowed = new Map<string, AllowedExtension>();
  if (remote !== undefined) {
    const listed = [
      ...remote.publicExtensions.map((name, i) => ({ name, field: `remote_extensions.public_extensions[${i}]` })),
      ...remote.customExtensions.map((name, i) => ({ name, field: `remote_extensions.custom_extensions[${i}]` })),
    ];
    for (const { name, field } of listed) {
      validName(name, field);
      const data = remote.extensionData[name];
      if (data === undefined) throw new SpecError(field, `extension "${name}" has no entry in remote_extensions.extension_data`);
      const controlFile = data.controlData[`${name}.control`];
      if (controlFile === undefined) {
        throw new SpecError(`remote_extensions.extension_data.${name}.control_data`, `has no "${name}.control"`);
      }
      for (const file of Object.keys(data.controlData)) checkControlFileName(file, name);
      allowed.set(name, { name, sha256: data.sha256, controlData: data.controlData, requires: requiresOf(controlFile) });
    }
  }
  const libraryIndex = new Map<string, string>();
  for (const [library, extension] of Object.entries(remote?.libraryIndex ?? {})) {
    validName(library, `remote_extensions.library_index.${library}`);
    if (allowed.has(extension)) libraryIndex.set(library, extension);
  }
  if (allowed.size > 0 && options.extensionStore === undefined) {
    throw new SpecError("pgmesh.extension_store", "is needed to download the bundles of remote_extensions (addr and download_token)");
  }
  return {
    allowed,
    libraryIndex,
    extensionStore: options.extensionStore,
    dirs: options.dirs,
    preloadLibraries: [...new Set((options.preloadLibraries ?? []).map(libraryNameOf))],
    logger: options.logger,
    backgroundConcurrency: positive("backgroundConcurrency", options.backgroundConcurrency ?? 2),
    maxAttempts: positive("maxAttempts", options.maxAttempts ?? 5),
    initialBackoffMs: positive("initialBackoffMs", options.initialBackoffMs ?? 250),
    maxBackoffMs: positive("maxBackoffMs", options.maxBackoffMs ?? 8_000),
    downloadTimeoutMs: positive("downloadTimeoutMs", options.downloadTimeoutMs ?? 120_000),
    maxBundleBytes: positive("maxBundleBytes", options.maxBundleBytes ?? 1024 ** 3),
    onEvent: options.onEvent ?? (() => undefined),
  };
}

function validName(name: string, field: string): void {
  try {
    checkExtensionName(name);
  } catch (error) {
    if (error instanceof InvalidExtensionNameError) throw new SpecError(field, error.reason);
    throw error;
  }
}

/** A control_data key must be one of the extension's own control files: compute-ctl writes it to <sharedir>/extension/<key>. */
function checkControlFileName(file: string, extension: string): void {
  const reason = /^[^/\\]+\.control$/.test(file)
    ? foreignFileReason(`share/extension/${file}`, extension)
    : "it is not a control file name (<name>.control or <name>--<version>.control, no folders)";
  if (reason !== undefined) throw new SpecError(`remote_extensions.extension_data.${extension}.control_data`, `key ${JSON.stringify(file)} is refused: ${reason}`);
}

/** The `requires` list of a control file: "cube, earthdistance" -> ["cube", "earthdistance"]. */
function requiresOf(controlFile: string): string[] {
  const requires = parseControlFile(controlFile).get("requires") ?? "";
  return requires.split(",").map((name) => name.trim()).filter((name) => name !== "");
}

function positive(name: string, value: number): number {
  if (!Number.isInteger(value) || value <= 0) throw new RangeError(`extension files option ${name} must be a positive integer, got ${value}`);
  return value;
}
