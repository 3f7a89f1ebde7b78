export type {
  BlobInfo,
  BlobObject,
  BlobPage,
  BlobStore,
  DeletedCounts,
  GetOptions,
  ListOptions,
  PutOptions,
} from "./blob-store.js";
export {
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
  BlobStoreUrlError,
  BlobTooLargeError,
} from "./blob-errors.js";
export { validateBlobKey, validateBlobPrefix } from "./blob-key.js";
export {
  blobStoreOptionsFromEnv,
  compileBlobStoreOptions,
  type BlobStoreOptions,
  type CompiledBlobStoreOptions,
  type S3ConditionalWrites,
  s3ConditionalWritesModes,
} from "./blob-store-options.js";
export { openBlobStore } from "./open-blob-store.js";
export { blobErrorToConnect } from "./blob-error-to-connect.js";
export { claimKey, type ClaimOptions, type ClaimResult } from "./claim-key.js";
export { withBlobLease, type BlobLeaseOptions } from "./blob-lease.js";
export { bytesBody } from "./bytes-body.js";
export { removeOrphanedSpoolFiles, SpoolSweeper } from "./spool-file.js";
export { spoolFilePath } from "./spool-owner.js";
