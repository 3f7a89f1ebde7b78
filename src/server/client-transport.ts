import type { Interceptor, Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";

export interface ClientTransportOptions {
  /** The server's base URL, e.g. ServerHandle.url or "http://127.0.0.1:7101". */
  readonly baseUrl: string;
  /** A bearer token, or a function returning a fresh one per call. */
  readonly token?: string | (() => string | Promise<string>);
  /** Default deadline for calls without their own timeoutMs. */
  readonly defaultTimeoutMs?: number;
  /** Largest message accepted from the server (default 4 MiB, as the server). */
  readonly readMaxBytes?: number;
  readonly interceptors?: readonly Interceptor[];
}

/**
 * A gRPC (HTTP/2 cleartext) transport for calling pgmesh services from other
 * pgmesh code: binary protobuf, no compression (byte streams keep their
 * backpressure), and the bearer token on every call.
 */
export function createClientTransport(options: ClientTransportOptions): Transport {
  const { token } = options;
  const interceptors: Interceptor[] = [...(options.interceptors ?? [])];
  if (token !== undefined) {
    interceptors.push((next) => async (req) => {
      req.header.set("authorization", `Bearer ${typeof token === "string" ? token : await token()}`);
      return next(req);
    });
  }
  return createGrpcTransport({
    baseUrl: options.baseUrl,
    interceptors,
    acceptCompression: [],
    compressMinBytes: Number.MAX_SAFE_INTEGER,
    readMaxBytes: options.readMaxBytes ?? 4 * 1024 * 1024,
    ...(options.defaultTimeoutMs !== undefined ? { defaultTimeoutMs: options.defaultTimeoutMs } : {}),
  });
}
