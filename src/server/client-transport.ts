import type { ClientHttp2Session } from "node:http2";
import { Code, ConnectError, type Interceptor, type Transport } from "@connectrpc/connect";
import { AuthError, checkBearerTokenSize } from "../auth/index.js";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { createFailoverTransport } from "./failover-transport.js";
import { checkHttp2WindowBytes, defaultHttp2WindowBytes } from "./http2-window.js";

export interface ClientTransportOptions {
  /**
   * The server's base URL, e.g. ServerHandle.url or "http://127.0.0.1:7101";
   * or the base URLs of several replicas of one service, which calls fail
   * over between (see createFailoverTransport).
   */
  readonly baseUrl: string | readonly string[];
  /** A bearer token, or a function returning a fresh one per call. */
  readonly token?: string | (() => string | Promise<string>);
  /** Default deadline for calls without their own timeoutMs. */
  readonly defaultTimeoutMs?: number;
  /** Largest message accepted from the server (default 4 MiB, as the server). */
  readonly readMaxBytes?: number;
  /**
   * HTTP/2 flow-control window the client grants each response stream and the connection, in bytes
   * (default 8 MiB): how far the server may send ahead of the caller reading.
   */
  readonly http2WindowBytes?: number;
  readonly interceptors?: readonly Interceptor[];
  /**
   * With several replicas: how long opening a connection to one may take
   * before the call moves on to the next (default 2000 ms). A host that drops
   * packets would otherwise hold the call until its deadline.
   */
  readonly connectTimeoutMs?: number;
}

/**
 * A gRPC (HTTP/2 cleartext) transport for calling pgmesh services from other
 * pgmesh code: binary protobuf, no compression (byte streams keep their
 * backpressure), wide HTTP/2 windows, and the bearer token on every call.
 * (Node's HTTP/2 sessions set TCP_NODELAY on their sockets themselves.)
 */
export function createClientTransport(options: ClientTransportOptions): Transport {
  const { baseUrl } = options;
  if (typeof baseUrl === "string") return createReplicaTransport(baseUrl, options);
  if (baseUrl.length === 1) return createReplicaTransport(baseUrl[0]!, options);
  const connectTimeoutMs = options.connectTimeoutMs ?? defaultFailoverConnectTimeoutMs;
  return createFailoverTransport(
    baseUrl.map((url) => ({ baseUrl: url, transport: createReplicaTransport(url, options, connectTimeoutMs) })),
  );
}

const defaultFailoverConnectTimeoutMs = 2000;

function createReplicaTransport(baseUrl: string, options: ClientTransportOptions, connectTimeoutMs?: number): Transport {
  const { token } = options;
  const interceptors: Interceptor[] = [...(options.interceptors ?? [])];
  if (token !== undefined) {
    interceptors.push((next) => async (req) => {
      const value = typeof token === "string" ? token : await token();
      try {
        checkBearerTokenSize(value);
      } catch (err) {
        // Refused here, as servers would: over HTTP/2 a header past ~128 KiB ends the whole connection.
        if (err instanceof AuthError) throw new ConnectError(err.message, Code.Unauthenticated);
        throw err;
      }
      req.header.set("authorization", `Bearer ${value}`);
      return next(req);
    });
  }
  const windowBytes = checkHttp2WindowBytes("client transport option", options.http2WindowBytes ?? defaultHttp2WindowBytes);
  return createGrpcTransport({
    baseUrl,
    sessionManager: new WideWindowSessionManager(baseUrl, windowBytes, connectTimeoutMs),
    interceptors,
    acceptCompression: [],
    compressMinBytes: Number.MAX_SAFE_INTEGER,
    readMaxBytes: options.readMaxBytes ?? 4 * 1024 * 1024,
    ...(options.defaultTimeoutMs !== undefined ? { defaultTimeoutMs: options.defaultTimeoutMs } : {}),
  });
}

/**
 * connect-node's session manager with the stream window (SETTINGS) and the
 * connection window (WINDOW_UPDATE on stream 0, before the first response
 * byte) widened on every session it opens; with a connect timeout, a
 * connection not open in time is abandoned as UNAVAILABLE.
 */
class WideWindowSessionManager extends Http2SessionManager {
  readonly #windowBytes: number;
  readonly #connectTimeoutMs: number | undefined;
  readonly #widened = new WeakSet<ClientHttp2Session>();

  constructor(baseUrl: string, windowBytes: number, connectTimeoutMs: number | undefined) {
    super(baseUrl, undefined, { settings: { initialWindowSize: windowBytes } });
    this.#windowBytes = windowBytes;
    this.#connectTimeoutMs = connectTimeoutMs;
  }

  override async request(...args: Parameters<Http2SessionManager["request"]>): ReturnType<Http2SessionManager["request"]> {
    const stream = await this.#withinConnectTimeout(super.request(...args));
    const session = stream.session as ClientHttp2Session | undefined;
    if (session && !this.#widened.has(session)) {
      this.#widened.add(session);
      session.setLocalWindowSize(this.#windowBytes);
    }
    return stream;
  }

  async #withinConnectTimeout<T>(request: Promise<T>): Promise<T> {
    const limitMs = this.#connectTimeoutMs;
    if (limitMs === undefined || this.state() === "open") return request;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const error = new ConnectError(`could not connect to ${this.authority} within ${limitMs} ms`, Code.Unavailable);
        this.abort(error);
        reject(error);
      }, limitMs);
    });
    try {
      return await Promise.race([request, timedOut]);
    } finally {
      clearTimeout(timer);
    }
  }
}
