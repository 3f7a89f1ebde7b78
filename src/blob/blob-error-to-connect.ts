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

/** Node and SDK error codes that mean the storage backend cannot be reached. */
const unreachable = new Set(["ECONNREFUSED", "ECONNRESET", "EHOSTUNREACH", "ENOTFOUND", "ETIMEDOUT", "EPIPE"]);

/**
 * Maps what a blob store throws to a ConnectError with the right code: the
 * typed blob errors by kind, an unreachable or failing (5xx) S3 endpoint to
 * UNAVAILABLE. Anything else is returned unchanged.
 */
export function blobErrorToConnect(error: unknown): unknown {
  if (error instanceof ConnectError) return error;
  for (const [type, code] of codes) {
    if (error instanceof type) return new ConnectError(error.message, code, undefined, undefined, error);
  }
  if (typeof error === "object" && error !== null) {
    const record = error as { code?: unknown; name?: string; $metadata?: { httpStatusCode?: number } };
    const status = record.$metadata?.httpStatusCode;
    if (
      (typeof record.code === "string" && unreachable.has(record.code)) ||
      record.name === "TimeoutError" ||
      (status !== undefined && status >= 500)
    ) {
      return new ConnectError(
        `blob storage is unavailable (${String(record.code ?? record.name)}); retry later`,
        Code.Unavailable,
        undefined,
        undefined,
        error,
      );
    }
  }
  return error;
}
