import { Code, type ConnectError } from "@connectrpc/connect";
import { ComputeCtlError } from "../compute-ctl-error.js";
import { quoteInput } from "../../errors/index.js";

/** What a name given to ensure() is: an extension (CREATE EXTENSION) or a library (LOAD). */
export type ExtensionKind = "extension" | "library";

/** A name that is not a valid extension or library name; nothing was looked up. */
export class InvalidExtensionNameError extends ComputeCtlError {
  constructor(
    readonly extensionName: string,
    readonly kind: ExtensionKind,
    readonly reason: string,
  ) {
    super(`${kind} name ${quoteInput(extensionName)} is not valid: ${reason}`, Code.InvalidArgument);
  }
}

/**
 * A name this compute may not use: it is neither in the spec's
 * remote_extensions nor installed with Postgres.
 */
export class ExtensionNotAvailableError extends ComputeCtlError {
  constructor(
    readonly extensionName: string,
    readonly kind: ExtensionKind,
  ) {
    super(
      kind === "extension"
        ? `extension "${extensionName}" is not available to this compute: it is not in the compute spec's remote_extensions and not installed with Postgres; ask the control plane to grant it to the tenant`
        : `library "${extensionName}" is not available to this compute: no extension in the compute spec's remote_extensions provides it (library_index) and it is not installed with Postgres`,
      Code.PermissionDenied,
    );
  }
}

/** The bytes downloaded for a bundle do not have the sha256 the spec names; nothing was installed. */
export class BundleChecksumError extends ComputeCtlError {
  constructor(
    readonly extensionName: string,
    readonly expectedSha256: string,
    readonly actualSha256: string,
  ) {
    super(
      `the bundle downloaded for extension "${extensionName}" has sha256 ${actualSha256}, but the spec names ${expectedSha256}; nothing was installed`,
      Code.DataLoss,
    );
  }
}

/** A bundle whose content cannot be installed (unsafe or malformed tar, over the size limit); nothing was installed. */
export class UnsafeBundleError extends ComputeCtlError {
  constructor(
    readonly extensionName: string,
    readonly sha256: string,
    readonly reason: string,
  ) {
    super(
      `the bundle of extension "${extensionName}" (sha256 ${sha256}) cannot be installed: ${reason}; nothing was installed`,
      Code.FailedPrecondition,
    );
  }
}

/** A file an extension would place that already has another owner. */
export interface FileConflict {
  /** Its bundle path, e.g. "lib/hstore.so". */
  readonly path: string;
  /** Where it is in the install. */
  readonly target: string;
  /** 'extension "hstore"' or "the Postgres install". */
  readonly owner: string;
}

const maxConflictsShown = 5;

/**
 * An extension's bundle (or the control files the spec gives for it) holds
 * files that another extension or the Postgres install owns; compute-ctl
 * never replaces them, so nothing was installed.
 */
export class FileOwnerConflictError extends ComputeCtlError {
  constructor(
    readonly extensionName: string,
    readonly sha256: string,
    readonly conflicts: readonly FileConflict[],
  ) {
    const shown = conflicts.slice(0, maxConflictsShown).map((c) => `${quoteInput(c.path)} belongs to ${c.owner}`);
    if (conflicts.length > maxConflictsShown) shown.push(`and ${conflicts.length - maxConflictsShown} more`);
    super(
      `the files of extension "${extensionName}" (bundle sha256 ${sha256}) cannot be installed: ${shown.join("; ")}; compute-ctl never replaces a file it did not place for the same extension, so nothing was installed (publish such files only in their owner's bundle)`,
      Code.FailedPrecondition,
    );
  }
}

/** A bundle that could not be downloaded and installed after every attempt. */
export class ExtensionDownloadError extends ComputeCtlError {
  constructor(
    readonly extensionName: string,
    readonly sha256: string,
    readonly attempts: number,
    readonly lastError: ConnectError,
  ) {
    super(
      `could not make extension "${extensionName}" available (bundle sha256 ${sha256}) after ${attempts} attempt${attempts === 1 ? "" : "s"}: ${lastError.rawMessage}`,
      lastError.code,
      undefined,
      undefined,
      lastError,
    );
  }
}

/** A library in shared_ or session_preload_libraries that neither Postgres nor the spec provides. */
export class PreloadLibraryMissingError extends ComputeCtlError {
  constructor(
    readonly library: string,
    readonly pkglibdir: string,
  ) {
    super(
      `library "${library}" is in the preload libraries but is neither in ${pkglibdir} nor provided by an extension of the compute spec's remote_extensions (library_index); Postgres could not start with it`,
      Code.FailedPrecondition,
    );
  }
}

/** ensure() or a download on an ExtensionFiles that was closed. */
export class ExtensionFilesClosedError extends ComputeCtlError {
  constructor(readonly extensionName: string) {
    super(`extension files are shut down (compute-ctl is stopping); "${extensionName}" was not made available`, Code.Unavailable);
  }
}
