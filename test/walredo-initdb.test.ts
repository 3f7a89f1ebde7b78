import { chmod, mkdtemp, readdir, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { pino } from "pino";
import tar from "tar-stream";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { WalRedoService } from "../gen/pgmesh/walredo/v1/walredo_pb.js";
import { serviceOf, createClientTransport, type ServerHandle } from "../src/server/index.js";
import { compileWalRedoOptions, createWalRedoService, RedoProcessPool } from "../src/walredo/index.js";
import { createTestKeys, type TestKeys } from "./helpers/test-keys.js";
import { startTestServer } from "./helpers/test-server.js";
import { startWalRedoHarness } from "./walredo-harness.js";

/** Reads a tar stream of chunks into name -> contents (files) / type (others). */
async function untar(chunks: AsyncIterable<Uint8Array>): Promise<Map<string, { type: string; data: Buffer }>> {
  const extract = tar.extract();
  const entries = new Map<string, { type: string; data: Buffer }>();
  const done = (async () => {
    for await (const entry of extract) {
      const parts: Buffer[] = [];
      for await (const part of entry) parts.push(part as Buffer);
      entries.set(entry.header.name, { type: entry.header.type ?? "file", data: Buffer.concat(parts) });
    }
  })();
  Readable.from((async function* () {
    for await (const c of chunks) yield Buffer.from(c);
  })()).pipe(extract);
  await done;
  return entries;
}

describe("WalRedo Initdb", () => {
  let keys: TestKeys;
  let server: ServerHandle;
  let scratchRoot: string;
  let pool: RedoProcessPool;
  let client: Client<typeof WalRedoService>;

  beforeAll(async () => {
    keys = await createTestKeys();
    scratchRoot = await mkdtemp(path.join(os.tmpdir(), "pgmesh-walredo-initdb-"));
    await chmod(scratchRoot, 0o755);
    const options = compileWalRedoOptions({ logger: pino({ level: "silent" }), scratchRoot, bundleDir: undefined });
    pool = new RedoProcessPool(options);
    server = await startTestServer({ keys, services: [serviceOf({ service: WalRedoService, impl: createWalRedoService(options, pool) })] });
    client = createClient(WalRedoService, createClientTransport({
      baseUrl: server.url,
      token: await keys.mint({ scope: "control_plane" }),
      readMaxBytes: 8 * 1024 * 1024,
    }));
  });

  afterAll(async () => {
    await server?.close();
    await pool?.close();
    await keys?.remove();
    await rm(scratchRoot, { recursive: true, force: true });
  });

  it("streams a new PostgreSQL 15 cluster as tar and removes its temporary directory", async () => {
    const chunkSizes: number[] = [];
    const entries = await untar((async function* () {
      for await (const message of client.initdb({ pgMajor: 15, superuser: "cloud_admin" })) {
        chunkSizes.push(message.chunk.length);
        yield message.chunk;
      }
    })());
    expect(entries.get("PG_VERSION")?.data.toString()).toBe("15\n");
    expect(entries.get("global/pg_control")?.data.length).toBe(8192);
    expect(entries.get("base")?.type).toBe("directory");
    expect(entries.get("postgresql.conf")?.data.toString()).toMatch(/lc_messages = 'C.UTF-8'/);
    expect(Math.max(...chunkSizes)).toBeLessThanOrEqual(1024 * 1024);
    expect(await readdir(scratchRoot)).toEqual([]);
  });

  it("creates the requested superuser", async () => {
    const entries = await untar((async function* () {
      for await (const m of client.initdb({ pgMajor: 15, superuser: "owner_x", locale: "C", encoding: "SQL_ASCII" })) yield m.chunk;
    })());
    // pg_authid (oid 1260) holds the bootstrap superuser's name.
    const authid = [...entries.entries()].find(([name]) => name === "global/1260")![1].data;
    expect(authid.includes(Buffer.from("owner_x"))).toBe(true);
    expect(entries.get("postgresql.conf")?.data.toString()).toMatch(/lc_messages = 'C'/);
  });

  it("rejects a superuser name that is not a role name", async () => {
    const call = async () => { for await (const _ of client.initdb({ pgMajor: 15, superuser: "x; drop" })) void _; };
    await expect(call()).rejects.toMatchObject({ code: Code.InvalidArgument, rawMessage: expect.stringMatching(/superuser "x; drop" is not a valid role name/) });
  });

  it("rejects a locale the system does not have, and leaves nothing behind", async () => {
    const call = async () => { for await (const _ of client.initdb({ pgMajor: 15, locale: "xx_YY.UTF-8" })) void _; };
    const err = await call().catch((e: unknown) => ConnectError.from(e));
    expect(err).toMatchObject({ code: Code.InvalidArgument });
    expect((err as ConnectError).rawMessage).toMatch(/initdb .* failed: .*locale/s);
    expect(await readdir(scratchRoot)).toEqual([]);
  });

  it("rejects an unsupported Postgres major", async () => {
    const call = async () => { for await (const _ of client.initdb({ pgMajor: 11 })) void _; };
    await expect(call()).rejects.toMatchObject({ code: Code.InvalidArgument, rawMessage: expect.stringMatching(/pg_major 11 is not served here; supported: 15/) });
  });

  it("removes the temporary directory when the caller cancels mid-stream", async () => {
    const abort = new AbortController();
    const call = async () => {
      for await (const _ of client.initdb({ pgMajor: 15 }, { signal: abort.signal })) abort.abort();
    };
    await expect(call()).rejects.toMatchObject({ code: Code.Canceled });
    // The server notices the cancel asynchronously: wait until its stream has finished cleaning up.
    await vi.waitFor(async () => expect(await readdir(scratchRoot)).toEqual([]), { timeout: 30_000, interval: 25 });
  });

  it("accepts an admin token and refuses a call without a token", async () => {
    const admin = createClient(WalRedoService, createClientTransport({ baseUrl: server.url, token: await keys.mint({ scope: "admin" }) }));
    await expect(admin.ping({ tenantId: "t1", pgMajor: 11 })).rejects.toMatchObject({ code: Code.InvalidArgument });
    const anonymous = createClient(WalRedoService, createClientTransport({ baseUrl: server.url }));
    await expect(anonymous.ping({ tenantId: "t1", pgMajor: 15 })).rejects.toMatchObject({ code: Code.Unauthenticated });
  });

  it("refuses a compute token: walredo is for storage services (control_plane or admin)", async () => {
    const computeClient = createClient(WalRedoService, createClientTransport({
      baseUrl: server.url, token: await keys.computeToken("t1", "tl1", "ep1"),
    }));
    const call = async () => { for await (const _ of computeClient.initdb({ pgMajor: 15 })) void _; };
    await expect(call()).rejects.toMatchObject({ code: Code.PermissionDenied });
  });
});

describe("WalRedo Initdb from the bundle", () => {
  it("runs the bundle's initdb through its launcher and streams the cluster", async () => {
    const harness = await startWalRedoHarness({});
    try {
      const entries = await untar((async function* () {
        for await (const m of harness.client.initdb({ pgMajor: 15 })) yield m.chunk;
      })());
      expect(entries.get("PG_VERSION")?.data.toString()).toBe("15\n");
      expect(entries.get("global/pg_control")?.data.length).toBe(8192);
      expect(await readdir(harness.scratchRoot)).toEqual([]);
    } finally {
      await harness.close();
    }
  });
});
