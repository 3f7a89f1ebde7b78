import { pino, type Logger } from "pino";
import { startServer, type ServerHandle, type ServerOptions } from "../../src/server/index.js";
import type { TestKeys } from "./test-keys.js";

export interface TestServerOptions extends Omit<ServerOptions, "port" | "auth" | "logger"> {
  /** Verify tokens with these keys; without them the server runs insecure. */
  readonly keys?: TestKeys;
  /** Default: a silent logger. */
  readonly logger?: Logger;
}

/** Starts an in-process server on a free loopback port; close it with handle.close(). */
export function startTestServer(options: TestServerOptions): Promise<ServerHandle> {
  const { keys, logger, ...rest } = options;
  return startServer({
    ...rest,
    port: 0,
    auth: keys ? { verifier: keys.verifier } : { insecure: true },
    logger: logger ?? pino({ level: "silent" }),
  });
}
