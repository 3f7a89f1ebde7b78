export { ExtensionStore, type Caller } from "./extension-store.js";
export { createNeonExtensionRoute } from "./neon-extension-route.js";
export {
  compileExtensionStoreOptions,
  ExtensionStoreOptionsError,
  type CompiledExtensionStoreOptions,
  type ExtensionStoreOptions,
} from "./extension-store-options.js";
export {
  extensionStorePublicMethods,
  extensionStoreRegistration,
  extensionStoreServiceImpl,
} from "./extension-store-service.js";
export { BundleRejectedError, type BundleRejection } from "./extension-store-errors.js";
export { classifyBundleEntry, extraShareFolders, normaliseEntryPath, type BundleEntryKind } from "./bundle-entry-rules.js";
export { checkLibraryOwners, checkOwnFile, foreignFileReason, libraryOfPath, type LibraryFile } from "./bundle-ownership.js";
export { checkTarFraming } from "./tar-framing.js";
export { parseControlFile } from "./control-file.js";
export { inspectBundle, type BundleControlFile, type BundleLimits, type BundleManifest } from "./inspect-bundle.js";
export {
  downloadTokenAudience,
  requireNamedBundle,
  signDownloadToken,
  verifyDownloadToken,
  verifyKeyOf,
  type DownloadTokenClaims,
  type DownloadVerifyKey,
} from "./download-token.js";
export { bundleKey } from "./bundle-keys.js";
export { BundleCache, type BundleCacheOptions, type BundleCacheStats } from "./bundle-cache.js";
export { bundleCacheMetrics } from "./bundle-cache-metrics.js";
export { bundleCacheRegistration } from "./bundle-cache-service.js";
export { DownloadSigningKeyError, resolveDownloadKeySet } from "./download-signing-key.js";
export { writeDeterministicTar, type BundleFile } from "./deterministic-tar.js";
export { PackError, packSourceFromDeb, packSourceFromPgConfig, type PackSource } from "./pack-sources.js";
export { packExtension, publishBundleFile, type PackedBundle, type PublishHeaderFields } from "./pack-extension.js";
