import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { performance } from "node:perf_hooks";
import type { Logger } from "pino";
import type { ServerMetrics } from "./server-metrics.js";

/** The route label of a path: the declared route prefix it starts with, or "other" (bounded, whatever clients send). */
export function httpRouteOf(pathname: string, routes: readonly string[]): string {
  return routes.find((route) => pathname === route || pathname.startsWith(route.endsWith("/") ? route : `${route}/`)) ?? "other";
}

/**
 * Counts a plain HTTP request now and, when its response closes, logs one line
 * for it (method, path without the query, status, duration, peer; "aborted"
 * when the client left before the response ended) and counts and times it.
 * `quiet` requests (metrics scrapes) log at debug.
 */
export function observeHttpRequest(
  req: IncomingMessage | Http2ServerRequest,
  res: ServerResponse | Http2ServerResponse,
  options: { readonly logger: Logger; readonly metrics: ServerMetrics; readonly route: string; readonly quiet: boolean },
): void {
  const { logger, metrics, route } = options;
  const started = performance.now();
  const method = req.method ?? "GET";
  metrics.http.started.inc({ method, route });
  const stopTimer = metrics.http.handlingSeconds.startTimer({ method, route });
  res.once("close", () => {
    stopTimer();
    const status = res.writableEnded ? String(res.statusCode) : "aborted";
    metrics.http.handled.inc({ method, route, status });
    logger[options.quiet ? "debug" : "info"](
      {
        method,
        path: (req.url ?? "/").split("?")[0],
        status,
        durationMs: Math.round((performance.now() - started) * 10) / 10,
        peer: `${req.socket.remoteAddress ?? "?"}:${req.socket.remotePort ?? "?"}`,
      },
      "http",
    );
  });
}
