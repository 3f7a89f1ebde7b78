import { Gauge, Registry } from "prom-client";
import type { ComputeStateName } from "./compute-state.js";
import { startupPhases, timingsByPhase, type StartupTimings } from "./startup-timings.js";

const stateNames: readonly ComputeStateName[] = [
  "empty", "configuration_pending", "init", "running", "configuration", "failed",
  "termination_pending_fast", "termination_pending_immediate", "terminated",
];

/** What the metrics read at scrape time. */
export interface MetricsSource {
  readonly state: ComputeStateName;
  readonly timings: StartupTimings;
  readonly lastActive: Date | undefined;
}

/** A Prometheus registry for one compute (its own, not prom-client's global one). */
export function createComputeMetrics(source: () => MetricsSource): Registry {
  const registry = new Registry();
  new Gauge({
    name: "pgmesh_compute_state",
    help: "1 for the compute's current state (Neon's compute_ctl names), 0 for the others",
    labelNames: ["state"],
    registers: [registry],
    collect() {
      const { state } = source();
      for (const name of stateNames) this.set({ state: name }, name === state ? 1 : 0);
    },
  });
  new Gauge({
    name: "pgmesh_compute_startup_phase_ms",
    help: "Milliseconds spent in each start-up phase of the current start",
    labelNames: ["phase"],
    registers: [registry],
    collect() {
      const byPhase = timingsByPhase(source().timings);
      for (const phase of startupPhases) this.set({ phase }, byPhase[phase]);
    },
  });
  new Gauge({
    name: "pgmesh_compute_last_active_timestamp_seconds",
    help: "Last client activity seen in pg_stat_activity (Unix seconds; 0 before any)",
    registers: [registry],
    collect() {
      this.set((source().lastActive?.getTime() ?? 0) / 1000);
    },
  });
  return registry;
}
