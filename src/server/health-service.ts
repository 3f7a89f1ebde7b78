import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import {
  Health,
  HealthCheckResponse_ServingStatus as ServingStatus,
  HealthCheckResponseSchema,
} from "../../gen/grpc/health/v1/health_pb.js";

/**
 * The serving status of a server: "" (the whole server) and every registered
 * service are SERVING until draining starts, then NOT_SERVING.
 */
export class HealthBoard {
  #serving = true;
  #version = 0;
  readonly #waiters = new Set<() => void>();

  constructor(readonly serviceNames: readonly string[]) {}

  /** The status of `service` ("" for the server), or undefined for a service not served here. */
  status(service: string): ServingStatus | undefined {
    if (service !== "" && !this.serviceNames.includes(service)) return undefined;
    return this.#serving ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;
  }

  get version(): number {
    return this.#version;
  }

  setServing(serving: boolean): void {
    if (serving === this.#serving) return;
    this.#serving = serving;
    this.#version++;
    for (const wake of this.#waiters) wake();
    this.#waiters.clear();
  }

  /** Resolves once the version is past `since`; rejects with the signal's reason on abort. */
  async changedSince(since: number, signal: AbortSignal): Promise<void> {
    if (this.#version > since) return;
    signal.throwIfAborted();
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        this.#waiters.delete(wake);
        reject(signal.reason);
      };
      const wake = (): void => {
        signal.removeEventListener("abort", onAbort);
        resolve();
      };
      this.#waiters.add(wake);
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }
}

/** grpc.health.v1.Health over a HealthBoard; Watch streams end after reporting NOT_SERVING. */
export function createHealthService(board: HealthBoard): ServiceImpl<typeof Health> {
  return {
    check(req) {
      const status = board.status(req.service);
      if (status === undefined) {
        throw new ConnectError(`service "${req.service}" is not served here`, Code.NotFound);
      }
      return { status };
    },
    list() {
      const statuses: Record<string, ReturnType<typeof create<typeof HealthCheckResponseSchema>>> = {};
      for (const name of ["", ...board.serviceNames]) {
        statuses[name] = create(HealthCheckResponseSchema, { status: board.status(name)! });
      }
      return { statuses };
    },
    async *watch(req, ctx) {
      let last: ServingStatus | undefined;
      for (;;) {
        const version = board.version;
        const status = board.status(req.service) ?? ServingStatus.SERVICE_UNKNOWN;
        if (status !== last) {
          last = status;
          yield { status };
        }
        // Draining is final: end the watch so watchers do not hold the shutdown for its grace time.
        if (status === ServingStatus.NOT_SERVING) return;
        await board.changedSince(version, ctx.signal);
      }
    },
  };
}
