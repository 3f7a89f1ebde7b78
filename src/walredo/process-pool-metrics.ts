import type { Registry } from "prom-client";
import { statsMetrics } from "../server/index.js";
import type { RedoProcessPool } from "./process-pool.js";

/** Prometheus metrics of the walredo process pool (redo latency is grpc_server_handling_seconds{grpc_method="Redo"}). */
export function processPoolMetrics(pool: RedoProcessPool): Registry {
  return statsMetrics(() => pool.stats, [
    { kind: "gauge", stat: "processes", name: "pgmesh_walredo_processes", help: "Live walredo processes (spawned, exit not yet seen); at most --max-processes" },
    { kind: "gauge", stat: "tenants", name: "pgmesh_walredo_tenants", help: "Tenants with walredo processes" },
    { kind: "gauge", stat: "inFlight", name: "pgmesh_walredo_requests_in_flight", help: "Requests and pings on walredo processes now" },
    { kind: "gauge", stat: "waiting", name: "pgmesh_walredo_requests_waiting", help: "Requests waiting at the --max-processes cap for a process to exit" },
    { kind: "counter", stat: "spawns", name: "pgmesh_walredo_spawns_total", help: "Walredo processes spawned (failed starts included)" },
    { kind: "counter", stat: "exits", name: "pgmesh_walredo_exits_total", help: "Walredo process exits seen, whatever ended them (idle, eviction, failure, shutdown)" },
  ]);
}
