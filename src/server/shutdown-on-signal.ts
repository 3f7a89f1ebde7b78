import type { Logger } from "pino";

/** Anything that drains and stops: a ServerHandle, or a service's own handle wrapping one. */
export interface Closable {
  close(options?: { readonly graceMs?: number }): Promise<void>;
}

export interface ShutdownOnSignalOptions {
  /** Grace time for in-flight calls (default: the server's shutdownGraceMs). */
  readonly graceMs?: number;
  /** Where signals come from and how to exit; the process by default (tests pass their own). */
  readonly process?: Pick<NodeJS.EventEmitter, "on"> & { exit(code: number): void };
}

/**
 * For cmd/ files: on SIGTERM or SIGINT, drain `target` (close) then exit 0;
 * a failed close exits 1, and a second signal exits 1 at once.
 */
export function shutdownOnSignal(target: Closable, logger: Logger, options: ShutdownOnSignalOptions = {}): void {
  const proc = options.process ?? process;
  const closeOptions = options.graceMs !== undefined ? { graceMs: options.graceMs } : {};
  let shuttingDown = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (shuttingDown) {
      logger.warn({ signal }, "second signal; exiting without draining");
      proc.exit(1);
      return;
    }
    shuttingDown = true;
    logger.info({ signal }, "shutting down");
    target.close(closeOptions).then(
      () => proc.exit(0),
      (err: unknown) => {
        logger.error({ err }, "shutdown failed");
        proc.exit(1);
      },
    );
  };
  proc.on("SIGTERM", onSignal);
  proc.on("SIGINT", onSignal);
}
