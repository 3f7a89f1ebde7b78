import { Counter, Histogram, Registry } from "prom-client";

/** Requests of one kind: counted when they start, counted with their outcome when they end, timed. */
export interface RequestMetrics<Label extends string, OutcomeLabel extends string> {
  readonly started: Counter<Label>;
  readonly handled: Counter<Label | OutcomeLabel>;
  readonly handlingSeconds: Histogram<Label>;
}

function requestMetrics<Label extends string, OutcomeLabel extends string>(
  registry: Registry,
  prefix: string,
  what: string,
  labelNames: readonly Label[],
  outcomeLabel: OutcomeLabel,
): RequestMetrics<Label, OutcomeLabel> {
  const registers = [registry];
  return {
    started: new Counter({ name: `${prefix}_started_total`, help: `${what} started on the server`, labelNames, registers }),
    handled: new Counter({
      name: `${prefix}_handled_total`,
      help: `${what} completed on the server, by ${outcomeLabel}`,
      labelNames: [...labelNames, outcomeLabel],
      registers,
    }),
    handlingSeconds: new Histogram({
      name: `${prefix}_handling_seconds`,
      help: `Time from the start of one of the ${what} to its end (a stream's last message), in seconds`,
      labelNames,
      registers,
    }),
  };
}

/**
 * A server's request metrics, named as the gRPC ecosystem names them
 * (go-grpc-prometheus): `grpc_server_started_total`, `grpc_server_handled_total`
 * with the status code, `grpc_server_handling_seconds`; and the same three for
 * the plain HTTP routes (`http_server_*`, by method, route and status).
 */
export class ServerMetrics {
  readonly registry = new Registry();
  readonly rpc = requestMetrics(this.registry, "grpc_server", "RPCs", ["grpc_type", "grpc_service", "grpc_method"], "grpc_code");
  readonly http = requestMetrics(this.registry, "http_server", "plain HTTP requests (REST routes, /metrics)", ["method", "route"], "status");
}
