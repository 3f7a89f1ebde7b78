import { pino, type DestinationStream, type Logger } from "pino";
import type { LogLevelName } from "../config/index.js";

/**
 * Fields never written as they are, a second line of defence behind code that
 * does not log secrets: bearer tokens in headers, passwords and SCRAM verifiers,
 * at the top level or up to two objects deep.
 */
const redactedPaths = ["authorization", "password", "encryptedPassword"].flatMap((key) => [key, `*.${key}`, `*.*.${key}`]);

/**
 * The JSON logger of a binary: one line per event on stdout (or `destination`),
 * `name` (the service) on every line, secrets redacted. Process warnings (the
 * AWS SDK's Node-version notice, deprecations) become warn lines of this
 * logger instead of free text on stderr, which would break a log stream that
 * collects both.
 */
export function createLogger(options: {
  readonly service: string;
  readonly level?: LogLevelName;
  readonly destination?: DestinationStream;
}): Logger {
  const logger = pino(
    { name: options.service, level: options.level ?? "info", redact: { paths: redactedPaths, censor: "[redacted]" } },
    options.destination,
  );
  logProcessWarnings(logger);
  return logger;
}

/** Sends process warnings to `logger` in place of Node's stderr printer (and of an earlier logger). */
export function logProcessWarnings(logger: Logger): void {
  process.removeAllListeners("warning");
  process.on("warning", (warning) => logger.warn({ warning: { name: warning.name, code: (warning as NodeJS.ErrnoException).code } }, warning.message));
}
