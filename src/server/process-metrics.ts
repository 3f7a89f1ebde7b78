import { collectDefaultMetrics, Registry } from "prom-client";

let processRegistry: Registry | undefined;

/**
 * prom-client's default process and Node metrics (CPU, memory, event loop lag,
 * GC, handles). They describe the process, not one server, so every server in
 * a process shares this one registry and its collectors start once.
 */
export function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}
