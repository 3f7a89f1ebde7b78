import { performance } from "node:perf_hooks";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import type { Logger } from "pino";
import { claimsKey } from "../auth/index.js";
import { peerKey } from "./call-context.js";
import { observeCall } from "./observe-call.js";

const serverFaults = new Set([Code.Internal, Code.Unknown, Code.DataLoss]);

/**
 * Logs one line per call: method, code ("ok" or the code name), duration ms,
 * tenant, scope, peer. Successful calls to `quietServices` (health probes,
 * reflection) log at debug.
 */
export function createLogInterceptor(logger: Logger, quietServices: ReadonlySet<string> = new Set()): Interceptor {
  return (next) => async (req) => {
    const started = performance.now();
    const method = `${req.service.typeName}/${req.method.name}`;
    const okLevel = quietServices.has(req.service.typeName) ? "debug" : "info";
    const log = (err: unknown): void => {
      const claims = req.contextValues.get(claimsKey);
      const fields = {
        method,
        durationMs: Math.round((performance.now() - started) * 10) / 10,
        tenant: claims?.tenantId,
        scope: claims?.scope,
        peer: req.contextValues.get(peerKey),
      };
      if (err === undefined) {
        logger[okLevel]({ ...fields, code: "ok" }, "call");
        return;
      }
      const error = ConnectError.from(err);
      const code = codeToString(error.code);
      if (serverFaults.has(error.code)) {
        logger.error({ ...fields, code, err: error.cause ?? error }, error.rawMessage);
      } else {
        logger.info({ ...fields, code, message: error.rawMessage }, "call");
      }
    };
    return observeCall(next, req, log);
  };
}
