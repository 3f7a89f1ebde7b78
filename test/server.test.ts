import { EventEmitter } from "node:events";
import { request as httpRequest } from "node:http";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type ServiceImpl } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { execa } from "execa";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import { EpufsService, FileInfoSchema } from "../gen/pgmesh/epufs/v1/epufs_pb.js";
import { createClientTransport, serviceOf, shutdownOnSignal, type ServerHandle } from "../src/server/index.js";
import { callFailure } from "./helpers/call-failure.js";
import { startTestServer } from "./helpers/test-server.js";

const buf = fileURLToPath(new URL("../node_modules/.bin/buf", import.meta.url));
const protoDir = fileURLToPath(new URL("../proto", import.meta.url));
const endpoint = { tenantId: "t1", timelineId: "tl1", endpointId: "e1" };

/** Runs `buf curl` with these arguments and returns its stdout. */
async function bufCurl(...args: string[]): Promise<string> {
  return (await execa(buf, ["curl", ...args])).stdout;
}

/** Resolves when `signal` aborts, with its reason. */
function aborted(signal: AbortSignal): Promise<unknown> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve(signal.reason);
    else signal.addEventListener("abort", () => resolve(signal.reason), { once: true });
  });
}

/** A deferred promise a test can resolve from outside. */
function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/**
 * A test-only partial Epufs: ListFiles answers by the tenant id it is asked
 * for ("echo", "throw", "wait-for-abort", "gate"); GetFile streams until aborted.
 */
function probeService() {
  const probe = {
    signalAborted: deferred<unknown>(),
    gateEntered: deferred(),
    gate: deferred(),
    streamStarted: deferred(),
  };
  const impl: Partial<ServiceImpl<typeof EpufsService>> = {
    async listFiles(req, ctx) {
      switch (req.endpoint?.tenantId) {
        case "throw":
          throw new Error("secret detail /etc/shadow");
        case "wait-for-abort":
          probe.signalAborted.resolve(await aborted(ctx.signal));
          throw ctx.signal.reason;
        case "gate":
          probe.gateEntered.resolve();
          await probe.gate.promise;
          return { files: [{ path: "after-gate" }] };
        default:
          return { files: [{ path: `echo:${req.pageToken.length}` }] };
      }
    },
    async *getFile(_req, ctx) {
      yield { msg: { case: "info", value: create(FileInfoSchema, { path: "streaming" }) } };
      probe.streamStarted.resolve();
      await aborted(ctx.signal);
      throw ctx.signal.reason;
    },
  };
  return { probe, registration: serviceOf({ service: EpufsService, impl }) };
}

describe("server transports on one port", () => {
  let server: ServerHandle;

  beforeAll(async () => {
    server = await startTestServer({
      services: [probeService().registration],
      fallback: (req, res) => {
        if (req.url !== "/hello") return false;
        res.writeHead(200, { "content-type": "text/plain" });
        res.end(`hello over HTTP/${req.httpVersion}\n`);
        return true;
      },
    });
  });
  afterAll(() => server.close());

  it("answers gRPC over HTTP/2 cleartext", async () => {
    const client = createClient(EpufsService, createClientTransport({ baseUrl: server.url }));
    const res = await client.listFiles({ endpoint });
    expect(res.files[0]?.path).toBe("echo:0");
  });

  it("answers gRPC-Web over HTTP/1.1", async () => {
    const transport = createGrpcWebTransport({ baseUrl: server.url, httpVersion: "1.1" });
    const res = await createClient(EpufsService, transport).listFiles({ endpoint });
    expect(res.files[0]?.path).toBe("echo:0");
  });

  it("answers Connect unary JSON over HTTP/1.1 to a plain fetch", async () => {
    const res = await fetch(`${server.url}/pgmesh.epufs.v1.EpufsService/ListFiles`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ endpoint: { tenantId: "t1" }, pageToken: "abc" }),
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ files: [{ path: "echo:3" }] });
  });

  it("answers Connect over HTTP/1.1 to the connect-node client", async () => {
    const transport = createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" });
    const res = await createClient(Health, transport).check({});
    expect(res.status).toBe(ServingStatus.SERVING);
  });

  it("serves a fallback route to a plain HTTP/1.1 request", async () => {
    const body = await new Promise<string>((resolve, reject) => {
      httpRequest(`${server.url}/hello`, (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (text += c));
        res.on("end", () => resolve(`${res.statusCode} ${text}`));
      })
        .on("error", reject)
        .end();
    });
    expect(body).toBe("200 hello over HTTP/1.1\n");
  });

  it("answers 404 naming the path when the fallback declines", async () => {
    const res = await fetch(`${server.url}/nowhere`);
    expect(res.status).toBe(404);
    expect(await res.text()).toContain("no route for GET /nowhere");
  });

  it("keeps an HTTP/1.1 connection alive across requests", async () => {
    const { Agent } = await import("node:http");
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const ports = new Set<number>();
    for (let i = 0; i < 3; i++) {
      await new Promise<void>((resolve, reject) => {
        const req = httpRequest(`${server.url}/hello`, { agent }, (res) => {
          ports.add(req.socket!.localPort!);
          res.resume();
          res.on("end", resolve);
        });
        req.on("error", reject).end();
      });
    }
    agent.destroy();
    expect(ports.size).toBe(1);
  });

  it("answers UNIMPLEMENTED for a method the service does not implement", async () => {
    const client = createClient(EpufsService, createClientTransport({ baseUrl: server.url }));
    await expect(client.deleteTenant({ tenantId: "t1" })).rejects.toMatchObject({ code: Code.Unimplemented });
  });

  it("turns a thrown non-ConnectError into INTERNAL without leaking its message", async () => {
    const client = createClient(EpufsService, createClientTransport({ baseUrl: server.url }));
    const err = await callFailure(client.listFiles({ endpoint: { tenantId: "throw" } }));
    expect(err.code).toBe(Code.Internal);
    expect(err.rawMessage).toBe("internal server error; the server log has the cause");
    expect(err.message).not.toContain("shadow");
  });
});

describe("server health and reflection", () => {
  let server: ServerHandle;

  beforeAll(async () => {
    server = await startTestServer({ services: [probeService().registration] });
  });
  afterAll(() => server.close());

  it("reports SERVING for the server and each service, NOT_FOUND for others", async () => {
    const health = createClient(Health, createClientTransport({ baseUrl: server.url }));
    expect((await health.check({})).status).toBe(ServingStatus.SERVING);
    expect((await health.check({ service: "pgmesh.epufs.v1.EpufsService" })).status).toBe(ServingStatus.SERVING);
    await expect(health.check({ service: "no.such.Service" })).rejects.toMatchObject({ code: Code.NotFound });
  });

  it("lists every status", async () => {
    const health = createClient(Health, createClientTransport({ baseUrl: server.url }));
    const { statuses } = await health.list({});
    expect(Object.fromEntries(Object.entries(statuses).map(([k, v]) => [k, v.status]))).toEqual({
      "": ServingStatus.SERVING,
      "pgmesh.epufs.v1.EpufsService": ServingStatus.SERVING,
    });
  });

  it("lists services and methods to buf curl by reflection v1", async () => {
    const methods = (await bufCurl("--list-methods", "--http2-prior-knowledge", server.url)).split("\n");
    expect(methods).toContain("pgmesh.epufs.v1.EpufsService/PutFile");
    expect(methods).toContain("grpc.health.v1.Health/Check");
    expect(methods).toContain("grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo");
  });

  it("lists services to buf curl by reflection v1alpha", async () => {
    const stdout = await bufCurl("--list-services", "--http2-prior-knowledge", "--reflect-protocol", "grpc-v1alpha", server.url);
    expect(stdout.split("\n").sort()).toEqual([
      "grpc.health.v1.Health",
      "grpc.reflection.v1.ServerReflection",
      "grpc.reflection.v1alpha.ServerReflection",
      "pgmesh.epufs.v1.EpufsService",
    ]);
  });

  it("lets buf curl call a method whose schema it learnt by reflection", async () => {
    const body = JSON.stringify({ endpoint: { tenant_id: "t1" }, page_token: "ab" });
    const stdout = await bufCurl("--http2-prior-knowledge", "--protocol", "grpc", "-d", body, `${server.url}/pgmesh.epufs.v1.EpufsService/ListFiles`);
    expect(JSON.parse(stdout)).toEqual({ files: [{ path: "echo:2" }] });
  });

  it("lets buf curl check health by reflection", async () => {
    const stdout = await bufCurl("--http2-prior-knowledge", "--protocol", "grpc", "-d", "{}", `${server.url}/grpc.health.v1.Health/Check`);
    expect(JSON.parse(stdout)).toEqual({ status: "SERVING" });
  });

  it("serves an independent @grpc/grpc-js client (health Check and a pgmesh method)", async () => {
    const definition = protoLoader.loadSync(["grpc/health/v1/health.proto", "pgmesh/epufs/v1/epufs.proto"], {
      includeDirs: [protoDir],
      enums: String,
      keepCase: true,
    });
    const loaded = grpc.loadPackageDefinition(definition) as unknown as {
      grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
      pgmesh: { epufs: { v1: { EpufsService: grpc.ServiceClientConstructor } } };
    };
    const target = `127.0.0.1:${server.address.port}`;
    const health = new loaded.grpc.health.v1.Health(target, grpc.credentials.createInsecure());
    const epufs = new loaded.pgmesh.epufs.v1.EpufsService(target, grpc.credentials.createInsecure());
    const call = <T>(client: grpc.Client, method: string, req: object): Promise<T> =>
      new Promise((resolve, reject) =>
        (client as unknown as Record<string, (r: object, cb: (e: Error | null, v: T) => void) => void>)[method]!(
          req,
          (err, value) => (err ? reject(err) : resolve(value)),
        ),
      );
    try {
      expect(await call(health, "Check", { service: "" })).toEqual({ status: "SERVING" });
      const res = await call<{ files: { path: string }[] }>(epufs, "ListFiles", { endpoint, page_token: "xyz" });
      expect(res.files[0]?.path).toBe("echo:3");
    } finally {
      health.close();
      epufs.close();
    }
  });
});

describe("server limits and deadlines", () => {
  let server: ServerHandle;
  let probe: ReturnType<typeof probeService>["probe"];

  beforeAll(async () => {
    const service = probeService();
    probe = service.probe;
    server = await startTestServer({ services: [service.registration], readMaxBytes: 64 * 1024 });
  });
  afterAll(() => server.close());

  it("aborts the handler's signal with DEADLINE_EXCEEDED when the grpc-timeout passes", async () => {
    // The client sends grpc-timeout but does not cancel by itself, so only the server's deadline can fire.
    const transport = createClientTransport({
      baseUrl: server.url,
      interceptors: [
        (next) => (req) => {
          req.header.set("grpc-timeout", "200m");
          return next(req);
        },
      ],
    });
    const client = createClient(EpufsService, transport);
    const err = await callFailure(client.listFiles({ endpoint: { tenantId: "wait-for-abort" } }));
    expect(err.code).toBe(Code.DeadlineExceeded);
    expect(ConnectError.from(await probe.signalAborted.promise).code).toBe(Code.DeadlineExceeded);
  });

  it("refuses a message over readMaxBytes with RESOURCE_EXHAUSTED", async () => {
    const client = createClient(EpufsService, createClientTransport({ baseUrl: server.url }));
    const err = await callFailure(client.listFiles({ endpoint, pageToken: "x".repeat(100 * 1024) }));
    expect(err.code).toBe(Code.ResourceExhausted);
  });

  it("accepts a message just under readMaxBytes", async () => {
    const client = createClient(EpufsService, createClientTransport({ baseUrl: server.url }));
    const res = await client.listFiles({ endpoint, pageToken: "x".repeat(60 * 1024) });
    expect(res.files[0]?.path).toBe(`echo:${60 * 1024}`);
  });
});

describe("server close", () => {
  it("drains an in-flight unary call before closing", async () => {
    const { probe, registration } = probeService();
    const server = await startTestServer({ services: [registration] });
    const client = createClient(EpufsService, createClientTransport({ baseUrl: server.url }));
    const call = client.listFiles({ endpoint: { tenantId: "gate" } });
    await probe.gateEntered.promise;
    let closed = false;
    const closing = server.close({ graceMs: 30_000 }).then(() => (closed = true));
    // A new connection is refused while draining.
    await expect(fetch(`${server.url}/nowhere`)).rejects.toThrow();
    expect(closed).toBe(false);
    probe.gate.resolve();
    expect((await call).files[0]?.path).toBe("after-gate");
    await closing;
    expect(closed).toBe(true);
  });

  it("reports NOT_SERVING to health watchers and ends their watch, then ends other streams after the grace time", async () => {
    const { probe, registration } = probeService();
    const server = await startTestServer({ services: [registration] });
    const transport = createClientTransport({ baseUrl: server.url });
    const watch = createClient(Health, transport).watch({})[Symbol.asyncIterator]();
    expect((await watch.next()).value?.status).toBe(ServingStatus.SERVING);
    const stream = createClient(EpufsService, transport).getFile({ endpoint, path: "x" })[Symbol.asyncIterator]();
    await stream.next();
    await probe.streamStarted.promise;

    const closing = server.close({ graceMs: 200 });
    expect((await watch.next()).value?.status).toBe(ServingStatus.NOT_SERVING);
    expect((await watch.next()).done).toBe(true);
    expect((await callFailure(stream.next())).code).toBe(Code.Unavailable);
    await closing;
  });

  it("logs one line per call with method, code, duration and peer, and health checks only at debug", async () => {
    const lines: Record<string, unknown>[] = [];
    const logger = pino({ level: "info" }, { write: (line: string) => lines.push(JSON.parse(line)) });
    const server = await startTestServer({ services: [probeService().registration], logger });
    const client = createClient(EpufsService, createClientTransport({ baseUrl: server.url }));
    await client.listFiles({ endpoint });
    await client.listFiles({ endpoint: { tenantId: "throw" } }).catch(() => undefined);
    await createClient(Health, createClientTransport({ baseUrl: server.url })).check({});
    await server.close();
    const calls = lines.filter((l) => l["method"] === "pgmesh.epufs.v1.EpufsService/ListFiles");
    expect(calls).toHaveLength(2);
    expect(calls[0]).toMatchObject({ code: "ok", peer: expect.stringMatching(/^127\.0\.0\.1:\d+$/) });
    expect(typeof calls[0]!["durationMs"]).toBe("number");
    expect(calls[1]).toMatchObject({ code: "internal", err: { message: "secret detail /etc/shadow" } });
    // Health probes succeed quietly (debug level).
    expect(lines.filter((l) => l["method"] === "grpc.health.v1.Health/Check")).toEqual([]);
  });
});

describe("server shutdown on signal", () => {
  it("drains an in-flight call on SIGTERM, then exits 0", async () => {
    const { probe, registration } = probeService();
    const server = await startTestServer({ services: [registration] });
    const signals = new EventEmitter();
    const exitCode = deferred<number>();
    shutdownOnSignal(server, pino({ level: "silent" }), { process: Object.assign(signals, { exit: exitCode.resolve }) });
    const client = createClient(EpufsService, createClientTransport({ baseUrl: server.url }));
    const call = client.listFiles({ endpoint: { tenantId: "gate" } });
    await probe.gateEntered.promise;

    signals.emit("SIGTERM", "SIGTERM");
    probe.gate.resolve();
    expect((await call).files[0]?.path).toBe("after-gate");
    expect(await exitCode.promise).toBe(0);
    await expect(fetch(`${server.url}/nowhere`)).rejects.toThrow();
  });
});

describe("server close with health watchers", () => {
  // With a 60 s grace time, only a watch that ends by itself lets close() finish within the test's timeout.
  it("ends health watches itself instead of waiting out the grace time", { timeout: 20_000 }, async () => {
    const server = await startTestServer({ services: [] });
    const watch = createClient(Health, createClientTransport({ baseUrl: server.url })).watch({})[Symbol.asyncIterator]();
    expect((await watch.next()).value?.status).toBe(ServingStatus.SERVING);
    await server.close({ graceMs: 60_000 });
    expect((await watch.next()).value?.status).toBe(ServingStatus.NOT_SERVING);
    expect((await watch.next()).done).toBe(true);
  });
});
