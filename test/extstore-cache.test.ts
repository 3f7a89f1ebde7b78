import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import {
  DownloadBundleRequestSchema,
  ExtensionStoreService,
  ReviewDecision,
  type DownloadBundleResponse,
} from "../gen/pgmesh/extensionstore/v1/extension_store_pb.js";
import { loadVerifyKeySet } from "../src/auth/index.js";
import { BundleCache, bundleCacheMetrics, bundleCacheRegistration, signDownloadToken } from "../src/extstore/index.js";
import { createClientTransport, type ServerHandle } from "../src/server/index.js";
import {
  collectDownload,
  publicHeader,
  publishRequests,
  sha256Of,
  startExtStoreHarness,
  type ExtStoreHarness,
} from "./fixtures/extstore/extstore-harness.js";
import { rawTar, validBundleEntries } from "./fixtures/extstore/raw-tar.js";
import { startTestServer } from "./helpers/test-server.js";

const bundleBytes = 200 * 1024;

describe("ExtensionStore node-local cache", () => {
  let h: ExtStoreHarness;
  let cacheDir: string;
  let cache: BundleCache;
  let cacheServer: ServerHandle;
  let client: Client<typeof ExtensionStoreService>;
  let counter = 0;

  beforeAll(async () => {
    h = await startExtStoreHarness("local");
    cacheDir = await mkdtemp(join(tmpdir(), "pgmesh-extcache-"));
    cache = await BundleCache.open({
      dir: cacheDir,
      // Room for two bundles, not three.
      maxBytes: Math.floor(2.5 * bundleBytes),
      upstream: createClient(ExtensionStoreService, createClientTransport({ baseUrl: h.server.url })),
      verifyKeys: (await loadVerifyKeySet(h.downloadJwksPath)).keys,
      logger: pino({ level: "silent" }),
    });
    cacheServer = await startTestServer({ services: [bundleCacheRegistration(cache, h.server.url)], keys: h.keys, metrics: bundleCacheMetrics(cache) });
    client = createClient(ExtensionStoreService, createClientTransport({ baseUrl: cacheServer.url }));
  });
  afterAll(async () => {
    await cacheServer?.close();
    await h?.stop();
    await rm(cacheDir, { recursive: true, force: true });
  });

  /** Publishes and approves a fresh ~200 KiB bundle; returns its sha256 and a token for it. */
  async function approvedBundle(): Promise<{ sha256: string; token: string }> {
    const name = `cached${counter++}`;
    const bytes = rawTar([...validBundleEntries(name), { name: `lib/bitcode/${name}/payload.bc`, content: randomBytes(bundleBytes - 4096) }]);
    const { extension } = await h.admin.publishExtension(publishRequests(publicHeader(name), bytes));
    const sha256 = extension!.sha256;
    await h.admin.reviewExtension({ name, sha256, decision: ReviewDecision.APPROVE });
    const { token } = await h.controlPlane.issueDownloadToken({ tenantId: "t1", endpointId: "ep1", sha256: [sha256] });
    return { sha256, token };
  }

  const download = (b: { sha256: string; token: string }) =>
    collectDownload(client.downloadBundle({ sha256: b.sha256, downloadToken: b.token }));

  async function cachedFiles(): Promise<string[]> {
    return (await readdir(cacheDir)).filter((f) => f.endsWith(".tar")).sort();
  }

  it("fetches a miss from upstream once, then serves it from disk", async () => {
    const b = await approvedBundle();
    const before = cache.stats();
    const first = await download(b);
    const second = await download(b);
    expect(sha256Of(first.bytes)).toBe(b.sha256);
    expect(second.bytes.equals(first.bytes)).toBe(true);
    expect(second.info?.sha256).toBe(b.sha256);
    expect(Math.max(...second.chunkSizes)).toBeLessThanOrEqual(1024 * 1024);
    const after = cache.stats();
    expect(after.upstreamFetches - before.upstreamFetches).toBe(1);
    expect(after.misses - before.misses).toBe(1);
    expect(after.hits - before.hits).toBe(1);
    expect(await cachedFiles()).toContain(`${b.sha256}.tar`);
  });

  it("reports its hits, misses, fetches and bytes held on /metrics", async () => {
    await download(await approvedBundle());
    const { hits, misses, upstreamFetches, bytes } = cache.stats();
    const text = await (await fetch(`${cacheServer.url}/metrics`)).text();
    expect(text).toContain(`pgmesh_extension_cache_hits_total ${hits}`);
    expect(text).toContain(`pgmesh_extension_cache_misses_total ${misses}`);
    expect(text).toContain(`pgmesh_extension_cache_upstream_fetches_total ${upstreamFetches}`);
    expect(text).toContain(`pgmesh_extension_cache_bytes ${bytes}`);
    expect(misses).toBeGreaterThan(0);
  });

  it("shares one upstream fetch among concurrent misses for one bundle", async () => {
    const b = await approvedBundle();
    const before = cache.stats().upstreamFetches;
    const results = await Promise.all(Array.from({ length: 6 }, () => download(b)));
    for (const r of results) expect(sha256Of(r.bytes)).toBe(b.sha256);
    expect(cache.stats().upstreamFetches - before).toBe(1);
  });

  it("evicts the least recently used bundle when the bytes exceed --cache-bytes", async () => {
    const a = await approvedBundle();
    const b = await approvedBundle();
    await download(a);
    await download(b);
    await download(a); // a is now the most recently used
    const evictionsBefore = cache.stats().evictions;
    const c = await approvedBundle();
    await download(c);
    const files = await cachedFiles();
    expect(files).toContain(`${a.sha256}.tar`);
    expect(files).toContain(`${c.sha256}.tar`);
    expect(files).not.toContain(`${b.sha256}.tar`);
    expect(cache.stats().evictions).toBeGreaterThan(evictionsBefore);
    expect(cache.stats().bytes).toBeLessThanOrEqual(Math.floor(2.5 * bundleBytes));
  });

  it("detects a corrupted cache entry by its hash and fetches it again", async () => {
    const b = await approvedBundle();
    await download(b);
    await writeFile(join(cacheDir, `${b.sha256}.tar`), randomBytes(bundleBytes));
    const before = cache.stats();
    const again = await download(b);
    expect(sha256Of(again.bytes)).toBe(b.sha256);
    expect(cache.stats().corruptEntries - before.corruptEntries).toBe(1);
    expect(cache.stats().upstreamFetches - before.upstreamFetches).toBe(1);
  });

  it("checks the download token itself, also for a cached bundle", async () => {
    const b = await approvedBundle();
    const other = await approvedBundle();
    await download(b);
    const fails = async (call: Promise<unknown>) => {
      const error = await call.then(() => undefined, (e: unknown) => e);
      expect(error).toBeInstanceOf(ConnectError);
      return Code[(error as ConnectError).code];
    };
    const { token: expired } = await signDownloadToken(h.downloadKey, { tenantId: "t1", endpointId: "ep1", bundles: [b.sha256] }, -120);
    expect(await fails(download({ sha256: b.sha256, token: expired }))).toBe("Unauthenticated");
    expect(await fails(download({ sha256: b.sha256, token: other.token }))).toBe("PermissionDenied");
    expect(await fails(download({ sha256: b.sha256, token: "" }))).toBe("Unauthenticated");
  });

  it("passes the upstream's refusal through on a miss", async () => {
    const name = `pending${counter++}`;
    const bytes = rawTar(validBundleEntries(name));
    const { extension } = await h.admin.publishExtension(publishRequests(publicHeader(name), bytes));
    const { token } = await signDownloadToken(h.downloadKey, { tenantId: "t1", endpointId: "ep1", bundles: [extension!.sha256] }, 60);
    const error = await download({ sha256: extension!.sha256, token }).then(() => undefined, (e: unknown) => e);
    expect(Code[(error as ConnectError).code]).toBe("FailedPrecondition");
    expect((error as ConnectError).rawMessage).toMatch(/^upstream extension store: .*pending review/);
    expect(await cachedFiles()).not.toContain(`${extension!.sha256}.tar`);
  });

  it("answers UNIMPLEMENTED for the other methods, naming the upstream", async () => {
    const withBearer = createClient(
      ExtensionStoreService,
      createClientTransport({ baseUrl: cacheServer.url, token: await h.keys.mint({ scope: "admin" }) }),
    );
    const error = await withBearer.listExtensions({}).then(() => undefined, (e: unknown) => e);
    expect(Code[(error as ConnectError).code]).toBe("Unimplemented");
    expect((error as ConnectError).rawMessage).toContain(h.server.url);
  });

  it("streams a miss to the caller while the upstream fetch is still writing it, which a replica opening the directory leaves alone", async () => {
    // The upstream response is held after its first chunk until the test lets it go on.
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const holdAfterFirstChunk: Interceptor = (next) => async (req) => {
      const res = await next(req);
      if (!res.stream) return res;
      const upstreamMessages = res.message;
      return {
        ...res,
        message: (async function* () {
          let chunks = 0;
          for await (const message of upstreamMessages) {
            yield message;
            if ((message as DownloadBundleResponse).msg.case === "chunk" && ++chunks === 1) await released;
          }
        })(),
      };
    };
    const dir = await mkdtemp(join(tmpdir(), "pgmesh-extcache-held-"));
    const held = await BundleCache.open({
      dir,
      maxBytes: 10 * bundleBytes,
      upstream: createClient(
        ExtensionStoreService,
        createClientTransport({ baseUrl: h.server.url, interceptors: [holdAfterFirstChunk] }),
      ),
      verifyKeys: (await loadVerifyKeySet(h.downloadJwksPath)).keys,
      logger: pino({ level: "silent" }),
    });
    try {
      const b = await approvedBundle();
      const stream = held.download(create(DownloadBundleRequestSchema, { sha256: b.sha256, downloadToken: b.token }));
      const info = await stream.next();
      const firstChunk = await stream.next();
      expect(info.value?.msg.case).toBe("info");
      expect(firstChunk.value?.msg.case).toBe("chunk");
      // The fetch is still in flight: nothing is in place in the cache yet.
      expect((await readdir(dir)).filter((f) => f.endsWith(".tar"))).toEqual([]);
      // A replica opening the same directory now must leave the live fetch's partial file alone.
      await BundleCache.open({
        dir,
        maxBytes: 10 * bundleBytes,
        upstream: createClient(ExtensionStoreService, createClientTransport({ baseUrl: "http://127.0.0.1:1" })),
        verifyKeys: [],
        logger: pino({ level: "silent" }),
      });
      release();
      const rest = await collectDownload({ [Symbol.asyncIterator]: () => stream });
      const first = firstChunk.value!.msg.value as Uint8Array;
      expect(sha256Of(Buffer.concat([first, rest.bytes]))).toBe(b.sha256);
      expect(await readdir(dir)).toContain(`${b.sha256}.tar`);
      expect(held.stats().upstreamFetches).toBe(1);
    } finally {
      release();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("reloads its entries from the directory when it opens again", async () => {
    const b = await approvedBundle();
    await download(b);
    const reopened = await BundleCache.open({
      dir: cacheDir,
      maxBytes: Math.floor(2.5 * bundleBytes),
      upstream: createClient(ExtensionStoreService, createClientTransport({ baseUrl: "http://127.0.0.1:1" })),
      verifyKeys: (await loadVerifyKeySet(h.downloadJwksPath)).keys,
      logger: pino({ level: "silent" }),
    });
    const served = await collectDownload(
      reopened.download(create(DownloadBundleRequestSchema, { sha256: b.sha256, downloadToken: b.token })),
    );
    expect(sha256Of(served.bytes)).toBe(b.sha256);
    expect(reopened.stats().hits).toBe(1);
    expect(reopened.stats().upstreamFetches).toBe(0);
  });
});
