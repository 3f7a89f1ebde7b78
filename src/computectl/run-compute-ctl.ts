import type { Logger } from "pino";
import { ComputeCtlService } from "../../gen/pgmesh/computectl/v1/compute_ctl_pb.js";
import { serviceOf, startServer, type ServerAuth, type ServerHandle } from "../server/index.js";
import { Compute } from "./compute.js";
import { compileComputeCtlOptions, type ComputeCtlOptions } from "./compute-ctl-options.js";
import { createComputeCtlService, logSpecWarnings } from "./compute-ctl-service.js";
import type { ComputeExtensions } from "./compute-extensions.js";
import { createComputeMetrics } from "./compute-metrics.js";

export interface RunComputeCtlOptions extends ComputeCtlOptions {
  /** Listen host (default 127.0.0.1). */
  readonly host?: string;
  /** Listen port (default 7103; 0 picks a free one). */
  readonly port?: number;
  readonly auth: ServerAuth;
  readonly logger: Logger;
  /** Extension loading (compute hook route, preloads, on-demand downloads); none: no remote extensions. */
  readonly extensions?: ComputeExtensions;
}

/** A compute-ctl running in this process. */
export interface ComputeCtlHandle {
  readonly compute: Compute;
  readonly server: ServerHandle;
  /** "http://host:port" */
  readonly url: string;
  /** What SIGTERM does: terminate the compute (saving its files) or abort its start, then stop serving. */
  close(): Promise<void>;
}

/**
 * Serves ComputeCtl (plus /metrics and the compute hook's route) on one port
 * and starts the compute from the options' spec, or waits for one.
 */
export async function runComputeCtl(options: RunComputeCtlOptions): Promise<ComputeCtlHandle> {
  const compute = new Compute(compileComputeCtlOptions(options), {
    logger: options.logger,
    ...(options.extensions ? { extensions: options.extensions } : {}),
  });
  const metrics = createComputeMetrics(() => ({ state: compute.state.state, timings: compute.timings, lastActive: compute.lastActive }));
  const server = await startServer({
    host: options.host ?? "127.0.0.1",
    port: options.port ?? 7103,
    services: [serviceOf({ service: ComputeCtlService, impl: createComputeCtlService(compute, options.logger) })],
    auth: options.auth,
    logger: options.logger,
    metrics,
    ...(options.extensions ? { fallback: options.extensions.httpHandler, httpRoutes: ["/extension_server/"] } : {}),
  });
  if (options.spec) logSpecWarnings(options.spec, options.logger);
  compute.begin(`${loopbackFor(server.address.host)}:${server.address.port}`);
  let closing: Promise<void> | undefined;
  return {
    compute,
    server,
    url: server.url,
    close: () => (closing ??= (async () => {
      try {
        await compute.shutdown();
      } finally {
        await server.close();
      }
    })()),
  };
}

/** How the compute's Postgres reaches this server: loopback when it listens on every address. */
function loopbackFor(host: string): string {
  if (host === "0.0.0.0" || host === "") return "127.0.0.1";
  if (host === "::") return "[::1]";
  return host.includes(":") ? `[${host}]` : host;
}
