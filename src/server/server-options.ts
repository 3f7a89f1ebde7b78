import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import type { DescService } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { TokenVerifier } from "../auth/index.js";
import { checkHttp2WindowBytes, defaultHttp2WindowBytes } from "./http2-window.js";

/** One service to serve: unimplemented methods answer UNIMPLEMENTED. */
export interface ServiceRegistration<S extends DescService = DescService> {
  readonly service: S;
  readonly impl: Partial<ServiceImpl<S>>;
  /** Method names (as in the .proto, e.g. "GetDownload") that need no bearer token. */
  readonly publicMethods?: readonly string[];
}

/** Binds a service to its implementation with the types checked. */
export function serviceOf<S extends DescService>(registration: ServiceRegistration<S>): ServiceRegistration {
  return registration as unknown as ServiceRegistration;
}

/** How the server authenticates calls: verify bearer JWTs, or (explicitly) not at all. */
export type ServerAuth = { readonly verifier: TokenVerifier } | { readonly insecure: true };

/**
 * Plain HTTP routes served next to the RPCs (REST paths, the compute hook's route, ...).
 * Return true when the request was handled, false to let the server answer 404.
 */
export type FallbackHandler = (
  req: IncomingMessage | Http2ServerRequest,
  res: ServerResponse | Http2ServerResponse,
) => boolean | Promise<boolean>;

export interface ServerOptions {
  /** Listen host (default 127.0.0.1). */
  readonly host?: string;
  /** Listen port; 0 picks a free one (see ServerHandle.address). */
  readonly port: number;
  readonly services: readonly ServiceRegistration[];
  readonly auth: ServerAuth;
  readonly logger: Logger;
  readonly fallback?: FallbackHandler;
  /**
   * Path prefixes the fallback serves ("/tenants/"): the route label of the
   * plain HTTP metrics; other paths count as "other". /metrics is the server's own.
   */
  readonly httpRoutes?: readonly string[];
  /** The service's own metrics, served on GET /metrics with the server's request and process metrics. */
  readonly metrics?: Registry;
  /** Largest message a client may send, in bytes (default 4 MiB). */
  readonly readMaxBytes?: number;
  /** Largest message the server sends, in bytes (default 4 MiB). */
  readonly writeMaxBytes?: number;
  /** Largest deadline a client may ask for, in ms; a longer one is INVALID_ARGUMENT (default: no limit). */
  readonly maxTimeoutMs?: number;
  /** Grace time close() gives in-flight calls before aborting them, in ms (default 10 000). */
  readonly shutdownGraceMs?: number;
  /**
   * HTTP/2 flow-control window the server grants each stream and each connection, in bytes
   * (default 8 MiB): how far a client may send ahead of the handler reading.
   */
  readonly http2WindowBytes?: number;
}

export interface CompiledServerOptions {
  readonly host: string;
  readonly port: number;
  readonly services: readonly ServiceRegistration[];
  readonly auth: ServerAuth;
  readonly logger: Logger;
  readonly fallback: FallbackHandler | undefined;
  readonly httpRoutes: readonly string[];
  readonly metrics: Registry | undefined;
  readonly readMaxBytes: number;
  readonly writeMaxBytes: number;
  readonly maxTimeoutMs: number | undefined;
  readonly shutdownGraceMs: number;
  readonly http2WindowBytes: number;
}

const MiB = 1024 * 1024;

/** Validates and defaults ServerOptions; throws RangeError/TypeError naming the bad option. */
export function compileServerOptions(options: ServerOptions): CompiledServerOptions {
  const port = options.port;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(`server port ${port} is not an integer in 0..65535`);
  }
  const names = new Set<string>();
  for (const { service, publicMethods = [] } of options.services) {
    if (names.has(service.typeName)) throw new TypeError(`service ${service.typeName} is registered twice`);
    names.add(service.typeName);
    for (const m of publicMethods) {
      if (!service.methods.some((d) => d.name === m)) {
        throw new TypeError(`public method "${m}" is not a method of ${service.typeName}`);
      }
    }
  }
  return {
    host: options.host ?? "127.0.0.1",
    port,
    services: options.services,
    auth: options.auth,
    logger: options.logger,
    fallback: options.fallback,
    httpRoutes: options.httpRoutes ?? [],
    metrics: options.metrics,
    readMaxBytes: positive("readMaxBytes", options.readMaxBytes ?? 4 * MiB),
    writeMaxBytes: positive("writeMaxBytes", options.writeMaxBytes ?? 4 * MiB),
    maxTimeoutMs: options.maxTimeoutMs === undefined ? undefined : positive("maxTimeoutMs", options.maxTimeoutMs),
    shutdownGraceMs: nonNegative("shutdownGraceMs", options.shutdownGraceMs ?? 10_000),
    http2WindowBytes: checkHttp2WindowBytes("server option", options.http2WindowBytes ?? defaultHttp2WindowBytes),
  };
}

function positive(name: string, value: number): number {
  if (!Number.isInteger(value) || value <= 0) throw new RangeError(`server option ${name} must be a positive integer, got ${value}`);
  return value;
}

function nonNegative(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 0) throw new RangeError(`server option ${name} must be an integer >= 0, got ${value}`);
  return value;
}
