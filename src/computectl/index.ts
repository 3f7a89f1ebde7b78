export { ActivityMonitor, computeCtlApplicationName } from "./activity-monitor.js";
export { Compute, type ComputeDeps, type ComputeStatusView } from "./compute.js";
export type { StatementInsight } from "./catalog-queries.js";
export { compileComputeCtlOptions, type CompiledComputeCtlOptions, type ComputeCtlOptions } from "./compute-ctl-options.js";
export type { ComputeExtensions } from "./compute-extensions.js";
export {
  adminRole,
  parseComputeSpec,
  parseComputeSpecJson,
  type BaseDataSource,
  type ComputeSpec,
  type DatabaseSpec,
  type DeltaOperation,
  type RemoteExtensionData,
  type RemoteExtensions,
  type RoleSpec,
  type ServiceAddress,
  type SettingSpec,
} from "./compute-spec.js";
export { ComputeStateError, ComputeStateMachine, type ComputeStateName, type StateSnapshot } from "./compute-state.js";
export { reconcileCatalog, type ConnectTo } from "./reconcile-catalog.js";
export { scramVerifier } from "./scram-verifier.js";
export { SpecError } from "./spec-error.js";
export { startupPhases, type StartupPhase, type StartupTimings } from "./startup-timings.js";
export { defaultPgBinaries } from "./default-pg-binaries.js";
export { runComputeCtl, type ComputeCtlHandle, type RunComputeCtlOptions } from "./run-compute-ctl.js";
export { createComputeCtlService } from "./compute-ctl-service.js";
export { RemoteExtensionLoader, type RemoteExtensionLoaderOptions } from "./remote-extension-loader.js";
export { buildDemoSpec, type DemoSpecOptions } from "./demo-spec.js";
export { ensureInitdbTemplate, type InitdbTemplateOptions } from "./initdb-template.js";
