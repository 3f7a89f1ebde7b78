import { tmpdir } from "node:os";
import type { Logger } from "pino";
import type { SigningKey } from "../auth/index.js";
import type { BlobStore } from "../blob/index.js";
import { verifyKeyOf, type DownloadVerifyKey } from "./download-token.js";
import type { BundleLimits } from "./inspect-bundle.js";

const mib = 1024 * 1024;

export interface ExtensionStoreOptions {
  /** Where bundles and every record live (local directory or S3). */
  readonly blobs: BlobStore;
  /** The store's own Ed25519 key that signs download tokens (the newest of its key set). */
  readonly signingKey: SigningKey;
  /**
   * Every key whose download tokens verify here (the whole key set, older and
   * newer keys of a rotation); the signing key verifies in any case.
   */
  readonly verifyKeys?: readonly DownloadVerifyKey[];
  readonly logger: Logger;
  /** Local directory for publish spool files (default: the OS temp dir). */
  readonly spoolDir?: string;
  /** Largest bundle accepted, in bytes (default 1 GiB). */
  readonly maxBundleBytes?: number;
  /** Largest single file in a bundle, in bytes (default 512 MiB). */
  readonly maxFileBytes?: number;
  /** Largest control file, in bytes (default 64 KiB). */
  readonly maxControlFileBytes?: number;
  /** Most tar entries in a bundle (default 100 000). */
  readonly maxEntries?: number;
  /** Download token lifetime when the request gives none, in seconds (default 300). */
  readonly defaultDownloadTokenTtlSec?: number;
  /** Longest download token lifetime, in seconds (default 3600). */
  readonly maxDownloadTokenTtlSec?: number;
  /** Most bundles one download token may name (default 256). */
  readonly maxBundlesPerToken?: number;
  /** ListExtensions page size when the request gives none (default 100; at most 1000). */
  readonly defaultPageSize?: number;
  /** The clock (default Date.now). */
  readonly now?: () => number;
}

export interface CompiledExtensionStoreOptions {
  readonly blobs: BlobStore;
  readonly signingKey: SigningKey;
  readonly verifyKeys: readonly DownloadVerifyKey[];
  readonly logger: Logger;
  readonly spoolDir: string;
  readonly limits: BundleLimits;
  readonly defaultDownloadTokenTtlSec: number;
  readonly maxDownloadTokenTtlSec: number;
  readonly maxBundlesPerToken: number;
  readonly defaultPageSize: number;
  readonly maxPageSize: number;
  readonly now: () => number;
}

export class ExtensionStoreOptionsError extends Error {
  override readonly name = "ExtensionStoreOptionsError";
}

export function compileExtensionStoreOptions(options: ExtensionStoreOptions): CompiledExtensionStoreOptions {
  const positive = (name: string, value: number | undefined, fallback: number): number => {
    const v = value ?? fallback;
    if (!Number.isSafeInteger(v) || v <= 0) {
      throw new ExtensionStoreOptionsError(`${name} must be a positive integer, got ${value}`);
    }
    return v;
  };
  const maxBundleBytes = positive("maxBundleBytes", options.maxBundleBytes, 1024 * mib);
  const maxFileBytes = positive("maxFileBytes", options.maxFileBytes, Math.min(512 * mib, maxBundleBytes));
  const maxDownloadTokenTtlSec = positive("maxDownloadTokenTtlSec", options.maxDownloadTokenTtlSec, 3600);
  const defaultDownloadTokenTtlSec = positive(
    "defaultDownloadTokenTtlSec",
    options.defaultDownloadTokenTtlSec,
    Math.min(300, maxDownloadTokenTtlSec),
  );
  if (defaultDownloadTokenTtlSec > maxDownloadTokenTtlSec) {
    throw new ExtensionStoreOptionsError(
      `defaultDownloadTokenTtlSec (${defaultDownloadTokenTtlSec}) exceeds maxDownloadTokenTtlSec (${maxDownloadTokenTtlSec})`,
    );
  }
  const maxPageSize = 1000;
  return {
    blobs: options.blobs,
    signingKey: options.signingKey,
    verifyKeys: [
      verifyKeyOf(options.signingKey),
      ...(options.verifyKeys ?? []).filter((key) => key.kid !== options.signingKey.kid),
    ],
    logger: options.logger,
    spoolDir: options.spoolDir ?? tmpdir(),
    limits: {
      maxBundleBytes,
      maxFileBytes,
      maxControlFileBytes: positive("maxControlFileBytes", options.maxControlFileBytes, 64 * 1024),
      maxEntries: positive("maxEntries", options.maxEntries, 100_000),
    },
    defaultDownloadTokenTtlSec,
    maxDownloadTokenTtlSec,
    maxBundlesPerToken: positive("maxBundlesPerToken", options.maxBundlesPerToken, 256),
    defaultPageSize: Math.min(positive("defaultPageSize", options.defaultPageSize, 100), maxPageSize),
    maxPageSize,
    now: options.now ?? Date.now,
  };
}
