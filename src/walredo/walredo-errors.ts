import { Code } from "@connectrpc/connect";
import { formatBufferTag, type BufferTag } from "./redo-protocol.js";

/**
 * A redo request that failed in the process pool, with the gRPC code that
 * fits: UNAVAILABLE (no process could be started, or shutting down),
 * RESOURCE_EXHAUSTED (process cap), DEADLINE_EXCEEDED (timed out twice),
 * INVALID_ARGUMENT (killed a process twice: the input is bad).
 */
export class RedoFailedError extends Error {
  constructor(
    readonly code: Code,
    readonly tenantId: string,
    readonly tag: BufferTag | undefined,
    detail: string,
  ) {
    super(`${tag ? `redo of ${formatBufferTag(tag)}` : "walredo"} for tenant "${tenantId}": ${detail}`);
    this.name = "RedoFailedError";
  }
}
