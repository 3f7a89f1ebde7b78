export { runFastImport, type FastImportResult, type SnapshotTarget } from "./fast-import.js";
export {
  compileFastImportOptions,
  type CompiledFastImportOptions,
  type FastImportOptions,
  type Selection,
} from "./fast-import-options.js";
export {
  DiskFullError,
  FastImportError,
  FastImportOptionsError,
  ImportCancelledError,
  InvalidSourceError,
  SnapshotExistsError,
  SourceUnreachableError,
  TimelineExistsError,
  ToolFailedError,
  UncleanShutdownError,
  WorkdirNotEmptyError,
  type ImportPhase,
} from "./fast-import-errors.js";
export { bulkLoadSettings } from "./bulk-load-settings.js";
export { portabilityFlags } from "./dump-restore.js";
export { resolvePgBinaries } from "./resolve-pg-binaries.js";
export { formatBytes, type ImportProgress, type ImportReporter } from "./import-reporter.js";
export { LogReporter } from "./log-reporter.js";
export { TtyReporter } from "./tty-reporter.js";
export { buildRoleScript, type RoleScript } from "./role-script.js";
export { parseSourceConnection, type SourceConnection } from "./source-connection.js";
export { getJson, snapshotKeys, type SnapshotKeys } from "./snapshot-status.js";
