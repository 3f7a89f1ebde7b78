export { buildBundle, type BuiltBundle } from "./build-bundle.js";
export { compileBundleOptions, type BundleOptions, type CompiledBundleOptions } from "./bundle-options.js";
export { BundleBuildError } from "./bundle-errors.js";
export type { BundleEntry, BundleManifest, VersionManifest } from "./bundle-manifest.js";
export { TEMPLATE_WAL_FILE, TEMPLATE_WAL_START_LSN, WALREDO_TEMPLATE } from "./walredo-template.js";
