import { pino, type Logger } from "pino";
import type { LogLevelName } from "../config/index.js";

/** The JSON logger of a binary: one line per event on stdout, `name` (the service) on every line. */
export function createLogger(options: { readonly service: string; readonly level?: LogLevelName }): Logger {
  return pino({ name: options.service, level: options.level ?? "info" });
}
