import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type ServiceImpl } from "@connectrpc/connect";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EpufsService, FileInfoSchema } from "../gen/pgmesh/epufs/v1/epufs_pb.js";
import { createClientTransport, serviceOf, type ServerHandle } from "../src/server/index.js";
import { callFailure } from "./helpers/call-failure.js";
import { startTestServer } from "./helpers/test-server.js";

const endpoint = { tenantId: "t1", timelineId: "tl1", endpointId: "e1" };
const service = 'grpc_service="pgmesh.epufs.v1.EpufsService"';

/** ListFiles answers, or fails NOT_FOUND for tenant "missing"; GetFile streams two messages. */
const impl: Partial<ServiceImpl<typeof EpufsService>> = {
  async listFiles(req) {
    if (req.endpoint?.tenantId === "missing") throw new ConnectError("no such tenant", Code.NotFound);
    return { files: [] };
  },
  async *getFile() {
    yield { msg: { case: "info", value: create(FileInfoSchema, { path: "a" }) } };
    yield { msg: { case: "chunk", value: new Uint8Array(3) } };
  },
};

describe("server metrics and request logs", () => {
  let server: ServerHandle;
  const logLines: Record<string, unknown>[] = [];
  const logWaiters: { path: string; resolve: (line: Record<string, unknown>) => void }[] = [];

  function writeLog(text: string): void {
    const line = JSON.parse(text) as Record<string, unknown>;
    logLines.push(line);
    for (const waiter of logWaiters) if (line.msg === "http" && line.path === waiter.path) waiter.resolve(line);
  }

  /** Requests a path and resolves with the request's log line, written when its response has closed. */
  async function fetchLogged(path: string, query = ""): Promise<Record<string, unknown>> {
    const line = new Promise<Record<string, unknown>>((resolve) => logWaiters.push({ path, resolve }));
    await fetch(`${server.url}${path}${query}`);
    return line;
  }

  beforeAll(async () => {
    server = await startTestServer({
      services: [serviceOf({ service: EpufsService, impl })],
      fallback: (req, res) => {
        if (!req.url?.startsWith("/things/")) return false;
        res.writeHead(204);
        res.end();
        return true;
      },
      httpRoutes: ["/things/"],
      logger: pino({ level: "debug" }, { write: writeLog }),
    });
  });
  afterAll(() => server.close());

  async function scrape(): Promise<string> {
    const res = await fetch(`${server.url}/metrics`);
    expect(res.headers.get("content-type")).toContain("text/plain");
    return res.text();
  }

  it("serves prom-client's default process and Node metrics on GET /metrics", async () => {
    const text = await scrape();
    expect(text).toMatch(/^process_cpu_user_seconds_total \d/m);
    expect(text).toMatch(/^nodejs_heap_size_used_bytes \d/m);
  });

  it("counts each RPC when it starts and when it ends, by method and status code, and times it", async () => {
    const client = createClient(EpufsService, createClientTransport({ baseUrl: server.url }));
    await client.listFiles({ endpoint });
    expect((await callFailure(client.listFiles({ endpoint: { ...endpoint, tenantId: "missing" } }))).code).toBe(Code.NotFound);
    const text = await scrape();
    const labels = `grpc_type="unary",${service},grpc_method="ListFiles"`;
    expect(text).toContain(`grpc_server_started_total{${labels}} 2`);
    expect(text).toContain(`grpc_server_handled_total{${labels},grpc_code="OK"} 1`);
    expect(text).toContain(`grpc_server_handled_total{${labels},grpc_code="NotFound"} 1`);
    expect(text).toContain(`grpc_server_handling_seconds_count{${labels}} 2`);
  });

  it("counts a server stream as handled when its last message is sent", async () => {
    const client = createClient(EpufsService, createClientTransport({ baseUrl: server.url }));
    for await (const _ of client.getFile({ endpoint, path: "a" }));
    const text = await scrape();
    const labels = `grpc_type="server_stream",${service},grpc_method="GetFile"`;
    expect(text).toContain(`grpc_server_handled_total{${labels},grpc_code="OK"} 1`);
  });

  it("counts plain HTTP requests by method, declared route and status; undeclared paths are one route", async () => {
    await fetchLogged("/things/one");
    await fetchLogged("/things/two");
    await fetchLogged(`/scanner/${Math.random()}`);
    const text = await scrape();
    expect(text).toContain('http_server_handled_total{method="GET",route="/things/",status="204"} 2');
    expect(text).toContain('http_server_handled_total{method="GET",route="other",status="404"} 1');
    expect(text).toContain('http_server_handling_seconds_count{method="GET",route="/things/"} 2');
  });

  it("logs one line per plain HTTP request, without its query", async () => {
    const line = await fetchLogged("/things/logged", "?token=secret");
    expect(line).toMatchObject({ level: 30, method: "GET", status: "204" });
    expect(JSON.stringify(logLines)).not.toContain("secret");
  });
});
