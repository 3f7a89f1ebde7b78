import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";

/** One replica of a service: where it is and a transport to it. */
export interface FailoverReplica {
  readonly baseUrl: string;
  readonly transport: Transport;
}

/** A replica that failed is skipped this long; then a health check may bring it back. */
const downForMs = 2000;
const healthCheckTimeoutMs = 1000;

interface ReplicaState extends FailoverReplica {
  readonly health: ReturnType<typeof createClient<typeof Health>>;
  /** 0 while the replica is believed up; else when it may be health-checked again. */
  downUntilMs: number;
}

/**
 * A transport over several replicas of one service. Calls go to the replica
 * that answered last; a call that fails with UNAVAILABLE (refused, reset,
 * draining) before it sent anything the caller could lose is retried once on
 * each other replica, and the failed replica is skipped until a
 * grpc.health.v1 check says it is SERVING again. So a dead replica costs one
 * retry, not an error. A client-streaming call is retried only if the failed
 * attempt had not taken any of its messages yet.
 */
export function createFailoverTransport(replicas: readonly FailoverReplica[]): Transport {
  const states: ReplicaState[] = replicas.map((replica) => ({
    ...replica,
    health: createClient(Health, replica.transport),
    downUntilMs: 0,
  }));
  let preferred = 0;

  /** The preferred replica first, then the others in turn; replicas that failed come after those believed up. */
  function inOrder(): ReplicaState[] {
    const rotated = [...states.slice(preferred), ...states.slice(0, preferred)];
    return [...rotated.filter((state) => state.downUntilMs === 0), ...rotated.filter((state) => state.downUntilMs !== 0)];
  }

  async function usable(state: ReplicaState): Promise<boolean> {
    if (state.downUntilMs === 0) return true;
    if (Date.now() < state.downUntilMs) return false;
    try {
      const { status } = await state.health.check({ service: "" }, { timeoutMs: healthCheckTimeoutMs });
      if (status === ServingStatus.SERVING) {
        state.downUntilMs = 0;
        return true;
      }
    } catch {
      // still down
    }
    state.downUntilMs = Date.now() + downForMs;
    return false;
  }

  async function attempt<T>(call: (transport: Transport) => Promise<T>, retryable: () => boolean): Promise<T> {
    const failures: string[] = [];
    for (const state of inOrder()) {
      if (!(await usable(state))) {
        failures.push(`${state.baseUrl}: not serving`);
        continue;
      }
      try {
        const result = await call(state.transport);
        preferred = states.indexOf(state);
        return result;
      } catch (error) {
        const connectError = ConnectError.from(error);
        if (connectError.code !== Code.Unavailable) throw error;
        state.downUntilMs = Date.now() + downForMs;
        if (!retryable()) throw error;
        failures.push(`${state.baseUrl}: ${connectError.rawMessage}`);
      }
    }
    throw new ConnectError(
      `no replica could take the call (${failures.join("; ")}); check that at least one is running`,
      Code.Unavailable,
    );
  }

  return {
    unary: (method, signal, timeoutMs, header, input, contextValues) =>
      attempt(
        (transport) => transport.unary(method, signal, timeoutMs, header, input, contextValues),
        () => true,
      ),
    stream: (method, signal, timeoutMs, header, input, contextValues) => {
      const replayable = new ReplayableUntilRead(input);
      return attempt(
        (transport) => transport.stream(method, signal, timeoutMs, header, replayable, contextValues),
        () => !replayable.read,
      );
    },
  };
}

/**
 * An async iterable that several attempts may open, as long as none has read
 * from it yet: the source is opened on the first read, and an attempt that
 * stops before reading does not close or fail it.
 */
class ReplayableUntilRead<T> implements AsyncIterable<T> {
  read = false;
  #source: AsyncIterator<T> | undefined;

  constructor(private readonly input: AsyncIterable<T>) {}

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return {
      next: () => {
        this.read = true;
        this.#source ??= this.input[Symbol.asyncIterator]();
        return this.#source.next();
      },
      return: async (value?: unknown) => {
        if (this.#source?.return) return this.#source.return(value);
        return { done: true, value: value as T };
      },
      // An attempt that failed before reading ends its side only; the source stays open for the next one.
      throw: async (error?: unknown) => {
        if (this.#source?.throw) return this.#source.throw(error);
        return { done: true, value: undefined as T };
      },
    };
  }
}
