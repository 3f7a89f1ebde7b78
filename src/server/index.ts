export { peerKey } from "./call-context.js";
export { createClientTransport, type ClientTransportOptions } from "./client-transport.js";
export { createLogger } from "./create-logger.js";
export { drainOrClose } from "./drain-or-close.js";
export { maxChunkBytes, splitChunks } from "./message-chunks.js";
export { loadServerAuth } from "./load-server-auth.js";
export { shutdownOnSignal, type Closable, type ShutdownOnSignalOptions } from "./shutdown-on-signal.js";
export {
  compileServerOptions,
  serviceOf,
  type CompiledServerOptions,
  type FallbackHandler,
  type ServerAuth,
  type ServerOptions,
  type ServiceRegistration,
} from "./server-options.js";
export { startServer, type ServerHandle } from "./start-server.js";
export { statsMetrics, type StatMetric } from "./stats-metrics.js";
