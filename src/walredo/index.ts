export { compileWalRedoOptions, WalRedoOptionsError, type CompiledWalRedoOptions, type RedoProcessLimits, type WalRedoOptions } from "./walredo-options.js";
export { RedoFailedError } from "./walredo-errors.js";
export { RedoProcessPool, type ProcessPoolStats } from "./process-pool.js";
export { processPoolMetrics } from "./process-pool-metrics.js";
export { createWalRedoService } from "./walredo-service.js";
export { initdbArchive, checkInitdbParameters, type InitdbArchiveOptions } from "./initdb-archive.js";
export { validateRedoRequest, type ValidRedoRequest } from "./validate-redo-request.js";
export { RedoProcess } from "./redo-process.js";
export { encodeRedoRequest, PAGE_SIZE, type BufferTag, type RedoRequest, type WalRecord } from "./redo-protocol.js";
