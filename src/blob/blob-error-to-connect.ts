import { Code, ConnectError } from "@connectrpc/connect";
import {
  BlobClaimUnsettledError,
  BlobConditionalWritesUnsupportedError,
  BlobError,
  BlobIntegrityError,
  BlobInvalidKeyError,
  BlobInvalidPageTokenError,
  BlobKeyConflictError,
  BlobNotFoundError,
  BlobPreconditionFailedError,
  BlobPutCancelledError,
  BlobSizeMismatchError,
  BlobTooLargeError,
} from "./blob-errors.js";

const codes: ReadonlyArray<readonly [new (...args: never[]) => BlobError, Code]> = [
  [BlobNotFoundError, Code.NotFound],
  [BlobInvalidKeyError, Code.InvalidArgument],
  [BlobInvalidPageTokenError, Code.InvalidArgument],
  [BlobSizeMismatchError, Code.InvalidArgument],
  [BlobTooLargeError, Code.ResourceExhausted],
  [BlobPutCancelledError, Code.Canceled],
  [BlobKeyConflictError, Code.FailedPrecondition],
  [BlobIntegrityError, Code.Unavailable],
  // A lost compare-and-swap: the caller re-reads and retries (gRPC's ABORTED).
  [BlobPreconditionFailedError, Code.Aborted],
  [BlobClaimUnsettledError, Code.Aborted],
  [BlobConditionalWritesUnsupportedError, Code.FailedPrecondition],
];

/**
 * Node system error codes of storage (remote or the local disk) and what they
 * mean to a caller. None is the caller's fault and each may pass, or not
 * happen on another replica: all are UNAVAILABLE.
 */
const systemErrors: Readonly<Record<string, string>> = {
  ECONNREFUSED: "blob storage is unavailable",
  ECONNRESET: "blob storage is unavailable",
  EHOSTUNREACH: "blob storage is unavailable",
  ENETUNREACH: "blob storage is unavailable",
  ENOTFOUND: "blob storage is unavailable",
  EAI_AGAIN: "blob storage is unavailable",
  ETIMEDOUT: "blob storage is unavailable",
  EPIPE: "blob storage is unavailable",
  ENOSPC: "the server's disk is full",
  EDQUOT: "the server's disk quota is used up",
  EACCES: "the server may not write its local storage",
  EPERM: "the server may not write its local storage",
  EROFS: "the server's local storage is read-only",
  EMFILE: "the server has too many open files",
  ENFILE: "the server has too many open files",
};

/** S3 error names that mean the bucket refuses the server's own credentials or configuration. */
const s3Refusals = new Set(["AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "NoSuchBucket", "ExpiredToken"]);

/**
 * The one mapping from what storage throws to a ConnectError, used by every
 * service (the server's error interceptor applies it to whatever a handler
 * throws): the typed blob errors by kind; Node system errors (unreachable
 * endpoint, full or read-only disk, no permission, too many files), timeouts
 * and failing or refusing S3 to UNAVAILABLE, with a message naming the cause
 * and never a path. Anything else is returned unchanged.
 */
export function blobErrorToConnect(error: unknown): unknown {
  if (error instanceof ConnectError) return error;
  for (const [type, code] of codes) {
    if (error instanceof type) return new ConnectError(error.message, code, undefined, undefined, error);
  }
  const what = unavailableBecause(error);
  if (what === undefined) return error;
  return new ConnectError(`${what}; retry later`, Code.Unavailable, undefined, undefined, error);
}

function unavailableBecause(error: unknown): string | undefined {
  if (typeof error !== "object" || error === null) return undefined;
  const record = error as { code?: unknown; name?: unknown; $metadata?: { httpStatusCode?: number }; errors?: unknown };
  if (typeof record.code === "string" && record.code in systemErrors) return `${systemErrors[record.code]} (${record.code})`;
  // Node 20 tries every address of a name and reports an AggregateError of the attempts.
  if (Array.isArray(record.errors) && record.errors.length > 0) return unavailableBecause(record.errors[0]);
  const name = typeof record.name === "string" ? record.name : undefined;
  if (name === "TimeoutError" || name === "RequestTimeout") return `blob storage is unavailable (${name})`;
  const status = record.$metadata?.httpStatusCode;
  if (status !== undefined && status >= 500) return `blob storage is unavailable (${name ?? `HTTP ${status}`})`;
  if (name !== undefined && s3Refusals.has(name)) return `blob storage refuses this server (${name}); its operator must fix the storage settings`;
  return undefined;
}
