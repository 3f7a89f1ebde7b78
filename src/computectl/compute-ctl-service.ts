import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { Logger } from "pino";
import {
  ComputeCtlService,
  ComputeState,
  ComputeStatusSchema,
  StartupMetricsSchema,
  TerminateMode,
  type ComputeStatus,
  type StartupMetrics,
} from "../../gen/pgmesh/computectl/v1/compute_ctl_pb.js";
import { requireClaims, requireScope } from "../auth/index.js";
import type { Compute, ComputeStatusView } from "./compute.js";
import { parseComputeSpecJson, type ComputeSpec } from "./compute-spec.js";
import type { ComputeStateName, StateSnapshot } from "./compute-state.js";
import type { StartupTimings } from "./startup-timings.js";

const stateEnum: Readonly<Record<ComputeStateName, ComputeState>> = {
  empty: ComputeState.EMPTY,
  configuration_pending: ComputeState.CONFIGURATION_PENDING,
  init: ComputeState.INIT,
  running: ComputeState.RUNNING,
  configuration: ComputeState.CONFIGURATION,
  failed: ComputeState.FAILED,
  termination_pending_fast: ComputeState.TERMINATION_PENDING_FAST,
  termination_pending_immediate: ComputeState.TERMINATION_PENDING_IMMEDIATE,
  terminated: ComputeState.TERMINATED,
};

/** Every call needs a control_plane (or admin) token, unless the server runs with --insecure-no-auth. */
function authorize(ctx: HandlerContext): void {
  requireScope(requireClaims(ctx), "control_plane");
}

/** One log line per thing the spec parse dropped so that vanilla Postgres can run it. */
export function logSpecWarnings(spec: ComputeSpec, logger: Logger): void {
  for (const warning of spec.warnings) logger.warn({ warning }, "compute spec adjusted for vanilla Postgres");
}

/** The ComputeCtl service over one Compute; transport-agnostic. */
export function createComputeCtlService(compute: Compute, logger: Logger): ServiceImpl<typeof ComputeCtlService> {
  return {
    getStatus(_req, ctx) {
      authorize(ctx);
      return { status: statusMessage(compute.status()) };
    },

    async *watchStatus(_req, ctx) {
      authorize(ctx);
      for await (const _ of stateChanges(compute, ctx.signal)) {
        yield { status: statusMessage(compute.status()) };
      }
    },

    async configure(req, ctx) {
      authorize(ctx);
      const spec = parseComputeSpecJson(req.specJson);
      logSpecWarnings(spec, logger);
      return { status: statusMessage(await compute.configure(spec)) };
    },

    async terminate(req, ctx) {
      authorize(ctx);
      const mode = req.mode === TerminateMode.IMMEDIATE ? "immediate" : "fast";
      return { status: statusMessage(await compute.terminate(mode)) };
    },

    getStartupMetrics(_req, ctx) {
      authorize(ctx);
      return { metrics: metricsMessage(compute.timings) };
    },

    async getInsights(req, ctx) {
      authorize(ctx);
      const statements = await compute.insights(req.limit > 0 ? Math.min(req.limit, 1000) : 20);
      return {
        statements: statements.map((s) => ({ ...s, calls: BigInt(s.calls), rows: BigInt(s.rows) })),
      };
    },

    async listDatabases(_req, ctx) {
      authorize(ctx);
      return { databases: await compute.databases() };
    },

    async listRoles(_req, ctx) {
      authorize(ctx);
      return { roles: await compute.roles() };
    },

    async ensureExtension(req, ctx) {
      authorize(ctx);
      return compute.ensureExtension(req.name, req.isLibrary);
    },
  };
}

/**
 * Yields once for the current state, then once per change, until the compute
 * is terminated or `signal` aborts. Changes that arrive while the consumer is
 * busy are coalesced (each yield reports the latest status).
 */
async function* stateChanges(compute: Compute, signal: AbortSignal): AsyncGenerator<StateSnapshot> {
  let pending = true;
  let wake: (() => void) | undefined;
  const unsubscribe = compute.state.subscribe(() => {
    pending = true;
    wake?.();
  });
  const onAbort = () => wake?.();
  signal.addEventListener("abort", onAbort);
  try {
    while (!signal.aborted) {
      if (!pending) {
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
        continue;
      }
      pending = false;
      const snapshot = compute.state.current;
      yield snapshot;
      // Neither state can change again, so the stream ends there.
      if (snapshot.state === "terminated" || snapshot.state === "failed") return;
    }
  } finally {
    unsubscribe();
    signal.removeEventListener("abort", onAbort);
  }
}

function statusMessage(view: ComputeStatusView): ComputeStatus {
  const init: MessageInitShape<typeof ComputeStatusSchema> = {
    state: stateEnum[view.state],
    stateName: view.state,
    error: view.error,
    stateChangeTime: timestampFromDate(view.changedAt),
    tenantId: view.tenantId,
    timelineId: view.timelineId,
    endpointId: view.endpointId,
    connectionUri: view.connectionUri,
    startupMetrics: metricsMessage(view.timings),
    ...(view.lastActive ? { lastActiveTime: timestampFromDate(view.lastActive) } : {}),
  };
  return create(ComputeStatusSchema, init);
}

function metricsMessage(t: StartupTimings): StartupMetrics {
  return create(StartupMetricsSchema, {
    waitForSpecMs: BigInt(t.waitForSpecMs),
    baseDataMs: BigInt(t.baseDataMs),
    savedFilesMs: BigInt(t.savedFilesMs),
    extensionsMs: BigInt(t.extensionsMs),
    startPostgresMs: BigInt(t.startPostgresMs),
    configMs: BigInt(t.configMs),
    totalMs: BigInt(t.totalMs),
  });
}
