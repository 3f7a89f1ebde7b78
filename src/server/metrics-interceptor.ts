import type { DescMethod } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { observeCall } from "./observe-call.js";
import type { ServerMetrics } from "./server-metrics.js";

/** go-grpc-prometheus's grpc_type for each kind of method. */
const grpcType: Readonly<Record<DescMethod["methodKind"], string>> = {
  unary: "unary",
  server_streaming: "server_stream",
  client_streaming: "client_stream",
  bidi_streaming: "bidi_stream",
};

/** The gRPC code name as grpc_code carries it: OK, InvalidArgument, NotFound… */
function grpcCode(error: unknown): string {
  return error === undefined ? "OK" : Code[ConnectError.from(error).code];
}

/** Counts every call when it starts and when it ends (with its code), and times it. */
export function createMetricsInterceptor(metrics: ServerMetrics): Interceptor {
  return (next) => async (req) => {
    const labels = { grpc_type: grpcType[req.method.methodKind], grpc_service: req.service.typeName, grpc_method: req.method.name };
    metrics.rpc.started.inc(labels);
    const stopTimer = metrics.rpc.handlingSeconds.startTimer(labels);
    return observeCall(next, req, (error) => {
      stopTimer();
      metrics.rpc.handled.inc({ ...labels, grpc_code: grpcCode(error) });
    });
  };
}
