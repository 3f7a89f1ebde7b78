import { EpufsService } from "../../gen/pgmesh/epufs/v1/epufs_pb.js";
import { serviceOf, type ServerAuth, type ServerOptions } from "../server/index.js";
import type { Epufs } from "./epufs.js";
import { createEpufsHandlers } from "./epufs-handlers.js";
import { createEpufsHttpRoutes } from "./epufs-http-routes.js";

/** What a server needs to serve Epufs: the gRPC service and the RFC's HTTP routes, with the same auth, and its metrics. */
export function epufsServerParts(epufs: Epufs, auth: ServerAuth): Pick<ServerOptions, "services" | "fallback" | "httpRoutes" | "metrics"> {
  return {
    services: [serviceOf({ service: EpufsService, impl: createEpufsHandlers(epufs) })],
    fallback: createEpufsHttpRoutes(epufs, auth),
    httpRoutes: ["/tenants/"],
    metrics: epufs.metrics.registry,
  };
}
