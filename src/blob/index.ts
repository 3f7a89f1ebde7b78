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
  BlobError,
  BlobIntegrityError,
  BlobInvalidKeyError,
  BlobInvalidPageTokenError,
  BlobKeyConflictError,
  BlobNotFoundError,
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
} from "./blob-store-options.js";
export { openBlobStore } from "./open-blob-store.js";
export { blobErrorToConnect } from "./blob-error-to-connect.js";
