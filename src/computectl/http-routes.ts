import type { Registry } from "prom-client";
import type { FallbackHandler } from "../server/index.js";
import type { ComputeExtensions } from "./compute-extensions.js";

/**
 * compute-ctl's plain HTTP routes next to its RPCs: GET /metrics (Prometheus)
 * and, with extension support, the compute hook's /extension_server/<name>.
 */
export function createComputeCtlRoutes(metrics: Registry, extensions: ComputeExtensions | undefined): FallbackHandler {
  return async (req, res) => {
    const url = new URL(req.url ?? "/", "http://localhost");
    if (url.pathname === "/metrics" && req.method === "GET") {
      const body = await metrics.metrics();
      res.writeHead(200, { "content-type": metrics.contentType });
      res.end(body);
      return true;
    }
    if (extensions && url.pathname.startsWith("/extension_server/")) return extensions.httpHandler(req, res);
    return false;
  };
}
