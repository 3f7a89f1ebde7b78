export {
  ExtensionFiles,
  type BackgroundSummary,
  type EnsureOptions,
  type EnsureResult,
  type ExtensionStartupTimings,
} from "./extension-files.js";
export {
  compileExtensionFilesOptions,
  type AllowedExtension,
  type CompiledExtensionFilesOptions,
  type ExtensionFilesEvent,
  type ExtensionFilesOptions,
} from "./extension-files-options.js";
export {
  BundleChecksumError,
  ExtensionDownloadError,
  ExtensionFilesClosedError,
  ExtensionNotAvailableError,
  FileOwnerConflictError,
  InvalidExtensionNameError,
  PreloadLibraryMissingError,
  UnsafeBundleError,
  type ExtensionKind,
  type FileConflict,
} from "./extension-errors.js";
export { createExtensionServerRoute, type ExtensionEnsurer } from "./extension-server-route.js";
export { computeHookLibrary, computeHookSettings, type ComputeHookSettingsOptions } from "./compute-hook-settings.js";
export { libraryNameOf, parseLibraryList } from "./extension-names.js";
export { installBundle, type InstallBundleOptions, type InstalledBundle } from "./install-bundle.js";
export type { PgInstallDirs } from "./install-layout.js";
export { readPgInstallDirs } from "./pg-install-dirs.js";
export type { DownloadPriority } from "./download-queue.js";
