export { compileAllowedPaths, defaultAllowedPaths } from "./allowed-paths.js";
export {
  Epufs,
  type DeletedFiles,
  type EndpointRefInput,
  type EpufsFileInfo,
  type FilePage,
  type GetFileResult,
  type PutFileInput,
} from "./epufs.js";
export { EpufsOptionsError } from "./epufs-errors.js";
export { createEpufsHandlers } from "./epufs-handlers.js";
export { createEpufsHttpRoutes, type EpufsHttpAuth } from "./epufs-http-routes.js";
export {
  compileEpufsOptions,
  defaultEndpointQuotaBytes,
  defaultMaxFileBytes,
  type CompiledEpufsOptions,
  type EpufsOptions,
} from "./epufs-options.js";
export { epufsServerParts } from "./epufs-server-parts.js";
export { endpointArchive } from "./endpoint-archive.js";
