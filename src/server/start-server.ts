import { createServer as createHttp1Server, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createHttp2Server, type Http2ServerRequest, type Http2ServerResponse } from "node:http2";
import { createServer as createNetServer, type AddressInfo } from "node:net";
import { Code, ConnectError, createContextValues, type ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { Registry } from "prom-client";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import * as reflectionV1 from "../../gen/grpc/reflection/v1/reflection_pb.js";
import * as reflectionV1alpha from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { authModeKey } from "../auth/index.js";
import { createAuthInterceptor } from "./auth-interceptor.js";
import { peerKey } from "./call-context.js";
import { ConnectionTracker } from "./connection-tracker.js";
import { DescriptorIndex } from "./descriptor-index.js";
import { createErrorInterceptor } from "./error-interceptor.js";
import { createHealthService, HealthBoard } from "./health-service.js";
import { createLogInterceptor } from "./log-interceptor.js";
import { createMetricsInterceptor } from "./metrics-interceptor.js";
import { httpRouteOf, observeHttpRequest } from "./observe-http-request.js";
import { processMetrics } from "./process-metrics.js";
import { sniffProtocol } from "./protocol-sniffer.js";
import { createReflectionV1, createReflectionV1alpha } from "./reflection-service.js";
import { ServerMetrics } from "./server-metrics.js";
import { compileServerOptions, type ServerOptions } from "./server-options.js";
import { quoteInput } from "../errors/index.js";

/** A running server. */
export interface ServerHandle {
  /** The bound address (the real port when 0 was asked for). */
  readonly address: { readonly host: string; readonly port: number };
  /** "http://host:port", the base URL for clients. */
  readonly url: string;
  /**
   * Stops accepting connections, reports NOT_SERVING, lets in-flight calls
   * finish for up to `graceMs` (default: the shutdownGraceMs option), then
   * aborts the signals of calls still running (streams end with UNAVAILABLE),
   * closes every connection and resolves. Calling it again returns the same promise.
   */
  close(options?: { readonly graceMs?: number }): Promise<void>;
}

type AnyRequest = IncomingMessage | Http2ServerRequest;
type AnyResponse = ServerResponse | Http2ServerResponse;

/** How long a new connection may take to send its first bytes. */
const firstBytesTimeoutMs = 30_000;

/**
 * Largest HTTP/1.1 request header section accepted, in bytes (Node's default is 16 KiB): an
 * oversized bearer token reaches the auth layer and is refused with its own limit, not a bare 431.
 * (Over HTTP/2, Node's HPACK decoder takes one header field up to ~128 KiB and ends the
 * connection beyond that; pgmesh's own client transport never sends such a token.)
 */
const maxHttp1HeaderBytes = 2 * 1024 * 1024;

/** How long connections get to send their last bytes (responses, aborted calls' errors) before they are cut. */
const flushMs = 2_000;

/**
 * Serves the given services, plus grpc.health.v1 and server reflection v1 and
 * v1alpha, over gRPC, gRPC-Web and Connect on one port: HTTP/2 cleartext
 * (prior knowledge) and HTTP/1.1, told apart by the HTTP/2 connection preface.
 */
export async function startServer(options: ServerOptions): Promise<ServerHandle> {
  const opts = compileServerOptions(options);
  const { logger } = opts;
  const insecure = "insecure" in opts.auth;

  const userServices = opts.services.map((s) => s.service);
  const board = new HealthBoard(userServices.map((s) => s.typeName));
  const builtIn = [Health, reflectionV1.ServerReflection, reflectionV1alpha.ServerReflection];
  const index = new DescriptorIndex([...userServices, ...builtIn]);
  const publicMethods = new Set<string>();
  for (const { service, publicMethods: names = [] } of opts.services) {
    for (const name of names) publicMethods.add(`${service.typeName}/${name}`);
  }
  for (const service of builtIn) {
    for (const m of service.methods) publicMethods.add(`${service.typeName}/${m.name}`);
  }

  const metrics = new ServerMetrics();
  const scraped = Registry.merge([processMetrics(), metrics.registry, ...(opts.metrics ? [opts.metrics] : [])]);
  const httpRoutes = ["/metrics", ...opts.httpRoutes];

  const shutdown = new AbortController();
  const handler = connectNodeAdapter({
    routes(router: ConnectRouter) {
      for (const { service, impl } of opts.services) router.service(service, impl);
      router.service(Health, createHealthService(board));
      router.service(reflectionV1.ServerReflection, createReflectionV1(index));
      router.service(reflectionV1alpha.ServerReflection, createReflectionV1alpha(index));
    },
    interceptors: [
      createLogInterceptor(logger, new Set(builtIn.map((s) => s.typeName))),
      createMetricsInterceptor(metrics),
      createErrorInterceptor(),
      createAuthInterceptor(opts.auth, publicMethods),
    ],
    readMaxBytes: opts.readMaxBytes,
    writeMaxBytes: opts.writeMaxBytes,
    ...(opts.maxTimeoutMs !== undefined ? { maxTimeoutMs: opts.maxTimeoutMs } : {}),
    shutdownSignal: shutdown.signal,
    contextValues: (req) =>
      createContextValues()
        .set(peerKey, `${req.socket.remoteAddress ?? "?"}:${req.socket.remotePort ?? "?"}`)
        .set(authModeKey, insecure ? "insecure" : "verified"),
    fallback: (req, res) => void serveFallback(req, res as AnyResponse),
  });

  /** GET /metrics (Prometheus text), then the options' routes, else 404; one log line and metrics per request. */
  async function serveFallback(req: AnyRequest, res: AnyResponse): Promise<void> {
    const route = httpRouteOf((req.url ?? "/").split("?")[0]!, httpRoutes);
    observeHttpRequest(req, res, { logger, metrics, route, quiet: route === "/metrics" });
    if (!URL.canParse(req.url ?? "/", "http://localhost")) {
      // Routes parse the target as a URL; one that is not (e.g. "http://host:99999/x") is the client's error.
      res.writeHead(400, { "content-type": "text/plain; charset=utf-8" });
      res.end(`the request target ${quoteInput(req.url ?? "")} is not a valid URL path\n`);
      return;
    }
    try {
      if (route === "/metrics" && req.method === "GET") {
        const body = await scraped.metrics();
        res.writeHead(200, { "content-type": scraped.contentType });
        res.end(body);
        return;
      }
      if (opts.fallback && (await opts.fallback(req, res))) return;
      if (!res.headersSent) {
        res.writeHead(404, { "content-type": "text/plain; charset=utf-8" });
        res.end(`no route for ${req.method} ${req.url}\n`);
      }
    } catch (err) {
      logger.error({ err, method: req.method, url: req.url }, "http route failed");
      if (res.headersSent) {
        res.destroy(); // a half-sent body must not look complete
        return;
      }
      res.writeHead(500, { "content-type": "text/plain; charset=utf-8" });
      res.end("internal server error; the server log has the cause\n");
    }
  }

  const tracker = new ConnectionTracker();
  const track = tracker.track(handler);

  const http1 = createHttp1Server({ requestTimeout: 0, maxHeaderSize: maxHttp1HeaderBytes }, track);
  // maxSessionMemory (MB): several concurrent streams of 1 MiB chunks fit without ENHANCE_YOUR_CALM resets.
  // The stream window (SETTINGS) and the connection window (WINDOW_UPDATE on stream 0) are both widened, so
  // byte streams do not wait on WINDOW_UPDATE round trips; the connection window bounds what one client can buffer.
  const http2 = createHttp2Server({ maxSessionMemory: 64, settings: { initialWindowSize: opts.http2WindowBytes } }, track);
  http2.on("session", (session) => {
    session.setLocalWindowSize(opts.http2WindowBytes);
    tracker.addSession(session);
  });

  // noDelay: TCP_NODELAY from accept on, whatever the protocol (small HTTP/2 frames must not wait for delayed ACKs).
  const net = createNetServer({ noDelay: true }, (socket) => {
    tracker.addSocket(socket);
    socket.on("error", (err) => logger.debug({ err }, "connection error"));
    // A connection that says nothing is dropped rather than held open; HTTP/1.1 and HTTP/2 have their own limits after.
    const silent = (): void => void socket.destroy();
    socket.setTimeout(firstBytesTimeoutMs, silent);
    sniffProtocol(socket, (protocol) => {
      socket.setTimeout(0);
      socket.removeListener("timeout", silent);
      if (protocol === "h2") {
        tracker.markHttp2(socket);
        http2.emit("connection", socket);
      } else {
        http1.emit("connection", socket);
        socket.resume(); // the HTTP/1.1 parser reads the sniffed bytes back through "data"
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    net.once("error", reject);
    net.listen(opts.port, opts.host, () => {
      net.removeListener("error", reject);
      resolve();
    });
  });
  const bound = net.address() as AddressInfo;
  const address = { host: bound.address, port: bound.port };
  const hostForUrl = address.host.includes(":") ? `[${address.host}]` : address.host;
  logger.info(
    { address: `${hostForUrl}:${address.port}`, services: userServices.map((s) => s.typeName), auth: insecure ? "insecure" : "jwt" },
    "serving",
  );

  let closing: Promise<void> | undefined;
  async function drain(graceMs: number): Promise<void> {
    logger.info({ graceMs, inFlight: tracker.inFlight }, "draining");
    board.setServing(false);
    const stopped = new Promise<void>((resolve) => net.close(() => resolve()));
    tracker.startDraining();
    if (!(await tracker.requestsDone(graceMs))) {
      logger.warn({ inFlight: tracker.inFlight }, "grace time over; aborting calls still running");
      shutdown.abort(new ConnectError("the server is shutting down", Code.Unavailable));
    }
    await tracker.closeConnections(flushMs);
    await stopped;
    logger.info("closed");
  }

  return {
    address,
    url: `http://${hostForUrl}:${address.port}`,
    close(closeOptions = {}) {
      closing ??= drain(closeOptions.graceMs ?? opts.shutdownGraceMs);
      return closing;
    },
  };
}
