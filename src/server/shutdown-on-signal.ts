import type { Logger } from "pino";
import type { ServerHandle } from "./start-server.js";

/**
 * For cmd/ files: on SIGTERM or SIGINT, drain the server (ServerHandle.close)
 * then exit 0; a second signal exits 1 at once.
 */
export function shutdownOnSignal(server: ServerHandle, logger: Logger, options: { readonly graceMs?: number } = {}): void {
  let shuttingDown = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (shuttingDown) {
      logger.warn({ signal }, "second signal; exiting without draining");
      process.exit(1);
    }
    shuttingDown = true;
    logger.info({ signal }, "shutting down");
    server.close(options).then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
}
