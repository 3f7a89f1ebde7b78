import * as http2 from "node:http2";
import { Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type ServiceImpl } from "@connectrpc/connect";
import { afterEach, describe, expect, it, vi } from "vitest";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { EpufsService, PutFileRequestSchema } from "../gen/pgmesh/epufs/v1/epufs_pb.js";
import { createClientTransport, serviceOf } from "../src/server/index.js";
import { callFailure } from "./helpers/call-failure.js";
import { startTestServer } from "./helpers/test-server.js";

const MiB = 1024 * 1024;
const endpoint = { tenantId: "t1", timelineId: "tl1", endpointId: "e1" };

/** Opens a raw HTTP/2 (h2c) session to `url` and resolves once the peer's SETTINGS arrived. */
async function rawSession(url: string): Promise<http2.ClientHttp2Session> {
  const session = http2.connect(url);
  await new Promise<void>((resolve, reject) => {
    session.once("remoteSettings", () => resolve());
    session.once("error", reject);
  });
  return session;
}

/** A PING round trip: every frame the peer sent before its PING ACK has been processed when it resolves. */
function pingRoundTrip(session: http2.Http2Session): Promise<void> {
  return new Promise((resolve, reject) => {
    session.ping((err) => (err ? reject(err) : resolve()));
  });
}

/** Starts a bare HTTP/2 server that records what each client session announces, and answers every stream NOT_FOUND. */
async function startRecordingPeer(): Promise<{
  url: string;
  announced: Promise<{ initialWindowSize: number | undefined; connectionWindow: number | undefined }>;
  close(): Promise<void>;
}> {
  let report!: (value: { initialWindowSize: number | undefined; connectionWindow: number | undefined }) => void;
  const announced = new Promise<{ initialWindowSize: number | undefined; connectionWindow: number | undefined }>((r) => (report = r));
  const server = http2.createServer();
  const sessions = new Set<http2.Http2Session>();
  server.on("session", (session) => sessions.add(session));
  server.on("stream", (stream) => {
    const session = stream.session!;
    void pingRoundTrip(session).then(() => {
      report({ initialWindowSize: session.remoteSettings.initialWindowSize, connectionWindow: session.state.remoteWindowSize });
      stream.respond({ ":status": 200, "content-type": "application/grpc", "grpc-status": "5", "grpc-message": "recorded" }, { endStream: true });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    announced,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const session of sessions) session.destroy(); // the client keeps its idle connection open
      }),
  };
}

describe("server transport tuning", () => {
  afterEach(() => vi.restoreAllMocks());

  // Node's HTTP/2 sessions call socket.setNoDelay() themselves; the server also accepts with noDelay, which sets the
  // option on the handle directly (not through the method watched here). This guards the end result on both sides.
  it("turns Nagle off (TCP_NODELAY) on every accepted connection and on client connections", async () => {
    const setNoDelay = vi.spyOn(Socket.prototype, "setNoDelay");
    const server = await startTestServer({ services: [] });
    try {
      await createClient(Health, createClientTransport({ baseUrl: server.url })).check({});
      const calls = setNoDelay.mock.calls.map((args, i) => ({ socket: setNoDelay.mock.contexts[i] as Socket, on: args[0] ?? true }));
      const port = server.address.port;
      expect(calls.filter((c) => c.socket.localPort === port).map((c) => c.on)).toEqual([true]);
      expect(calls.filter((c) => c.socket.remotePort === port).map((c) => c.on)).toEqual([true]);
    } finally {
      await server.close();
    }
  });

  it("announces its stream window (default 8 MiB, or http2WindowBytes) and opens the connection window as wide", async () => {
    for (const [options, expected] of [
      [{}, 8 * MiB],
      [{ http2WindowBytes: 2 * MiB }, 2 * MiB],
    ] as const) {
      const server = await startTestServer({ services: [], ...options });
      const session = await rawSession(server.url);
      try {
        await pingRoundTrip(session);
        expect(session.remoteSettings.initialWindowSize).toBe(expected);
        // The server's receive window for the whole connection, as its WINDOW_UPDATE told the client.
        expect(session.state.remoteWindowSize).toBe(expected);
      } finally {
        session.destroy();
        await server.close();
      }
    }
  });

  it("has client connections announce their stream window (default 8 MiB, or http2WindowBytes) and open the connection window as wide", async () => {
    for (const [options, expected] of [
      [{}, 8 * MiB],
      [{ http2WindowBytes: 3 * MiB }, 3 * MiB],
    ] as const) {
      const peer = await startRecordingPeer();
      try {
        const client = createClient(Health, createClientTransport({ baseUrl: peer.url, ...options }));
        const call = callFailure(client.check({}));
        const { initialWindowSize, connectionWindow } = await peer.announced;
        expect((await call).code).toBe(Code.NotFound);
        expect(initialWindowSize).toBe(expected);
        expect(connectionWindow).toBe(expected);
      } finally {
        await peer.close();
      }
    }
  });
});

describe("server backpressure with wide HTTP/2 windows", () => {
  it("stops a server stream's handler when the client stops reading, a few windows in", async () => {
    const total = 64 * MiB;
    let produced = 0;
    let finished!: () => void;
    const handlerFinished = new Promise<void>((resolve) => (finished = resolve));
    const impl: Partial<ServiceImpl<typeof EpufsService>> = {
      async *getFile() {
        const chunk = new Uint8Array(MiB);
        while (produced < total) {
          produced += chunk.byteLength;
          yield { msg: { case: "chunk", value: chunk } };
        }
        finished();
      },
    };
    const server = await startTestServer({ services: [serviceOf({ service: EpufsService, impl })] });
    const abort = new AbortController();
    try {
      const client = createClient(EpufsService, createClientTransport({ baseUrl: server.url }));
      const stream = client.getFile({ endpoint, path: "big" }, { signal: abort.signal })[Symbol.asyncIterator]();
      await stream.next(); // then stop reading
      // Nothing signals "the writer is blocked": give an unthrottled handler ample time to produce all 64 MiB.
      const outcome = await Promise.race([handlerFinished.then(() => "ran to the end" as const), sleep(1_000).then(() => "held back" as const)]);
      expect(outcome).toBe("held back");
      // Stream window + connection window (8 MiB each) and socket/stream buffers on both sides, not the whole 64 MiB.
      expect(produced).toBeLessThan(32 * MiB);
    } finally {
      abort.abort();
      await server.close({ graceMs: 0 });
    }
  });
});

describe("server close with a client stream answered early", () => {
  it("resets the rest of the request so close() does not wait out the grace time, and the client gets the handler's error", async () => {
    let refused!: () => void;
    const handlerRefused = new Promise<void>((resolve) => (refused = resolve));
    const impl: Partial<ServiceImpl<typeof EpufsService>> = {
      async putFile(requests) {
        for await (const _first of requests) break; // looks at the header only
        refused();
        throw new ConnectError("quota exceeded for tenant t1; delete files first", Code.ResourceExhausted);
      },
    };
    const server = await startTestServer({ services: [serviceOf({ service: EpufsService, impl })] });
    let sent = 0;
    async function* upload(): AsyncGenerator<MessageInitShape<typeof PutFileRequestSchema>> {
      yield { msg: { case: "header", value: { endpoint, path: "big" } } };
      const chunk = new Uint8Array(256 * 1024);
      for (;;) {
        sent += chunk.byteLength;
        yield { msg: { case: "chunk", value: chunk } }; // a client that never stops sending
      }
    }
    const client = createClient(EpufsService, createClientTransport({ baseUrl: server.url }));
    const call = callFailure(client.putFile(upload()));
    await handlerRefused;

    // Far below the grace time, with room for a slow machine.
    const closed = server.close({ graceMs: 120_000 }).then(() => "closed" as const);
    const outcome = await Promise.race([closed, sleep(30_000).then(() => "still waiting" as const)]);
    expect(outcome).toBe("closed");
    const err = await call;
    expect(err.code).toBe(Code.ResourceExhausted);
    expect(err.rawMessage).toContain("quota exceeded");
    expect(sent).toBeGreaterThan(0);
    await closed;
  });
});
