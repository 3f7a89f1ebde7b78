/**
 * ExtensionStore download throughput against its baseline, in one process:
 *   baseline: read the bundle's bytes straight from the blob store (a local
 *             directory), hashing them as a client must;
 *   store:    DownloadBundle through the service (gRPC over h2c, no
 *             compression), client hashing and checking the sha256;
 *   cache cold: the same through a node-local cache with an empty cache
 *             (cache fetches from the store, writes its file, serves it);
 *   cache warm: the same once the bundle is cached (hash-checked hit).
 * The bundle is ~50 MB of incompressible bytes. Prints MB/s (median and best
 * of --rounds: the best is the steadier figure on a busy machine) for each
 * and the ratios to the baseline.
 *
 *   node dist/bench/extension-store.js [--mb 50] [--rounds 7]
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { createClient } from "@connectrpc/connect";
import { pino } from "pino";
import { ExtensionStoreService, ReviewDecision, Visibility } from "../gen/pgmesh/extensionstore/v1/extension_store_pb.js";
import { generateKeyFiles, loadSigningKey, loadVerifyKeySet } from "../src/auth/index.js";
import { openBlobStore } from "../src/blob/index.js";
import {
  BundleCache,
  bundleCacheRegistration,
  bundleKey,
  ExtensionStore,
  extensionStoreRegistration,
  publishBundleFile,
  writeDeterministicTar,
} from "../src/extstore/index.js";
import { createClientTransport, startServer } from "../src/server/index.js";
import { writeFile, mkdir } from "node:fs/promises";

const { values } = parseArgs({
  options: { mb: { type: "string", default: "50" }, rounds: { type: "string", default: "7" } },
});
const megabytes = Number(values.mb);
const rounds = Number(values.rounds);
const logger = pino({ level: "silent" });
const root = await mkdtemp(join(tmpdir(), "pgmesh-bench-extstore-"));

try {
  // A ~50 MB bundle: a control file and one big library of random bytes.
  const src = join(root, "src");
  await mkdir(src);
  await writeFile(join(src, "bench.control"), "default_version = '1.0'\nmodule_pathname = '$libdir/bench'\n");
  await writeFile(join(src, "bench--1.0.sql"), "SELECT 1;\n");
  await writeFile(join(src, "bench.so"), randomBytes(megabytes * 1024 * 1024));
  const tarPath = join(root, "bench.tar");
  const { sha256, size } = await writeDeterministicTar(
    [
      { path: "lib/bench.so", source: join(src, "bench.so") },
      { path: "share/extension/bench.control", source: join(src, "bench.control") },
      { path: "share/extension/bench--1.0.sql", source: join(src, "bench--1.0.sql") },
    ],
    tarPath,
  );

  const blobs = await openBlobStore(`file://${join(root, "store")}`);
  const signingKeyFiles = await generateKeyFiles(join(root, "keys"));
  const store = new ExtensionStore({
    blobs,
    signingKey: await loadSigningKey(signingKeyFiles.privateKeyPath),
    logger,
    spoolDir: root,
  });
  const server = await startServer({ port: 0, auth: { insecure: true }, logger, services: [extensionStoreRegistration(store)] });
  const client = createClient(ExtensionStoreService, createClientTransport({ baseUrl: server.url }));
  await publishBundleFile(client, { name: "bench", version: "1.0", sha256, size, path: tarPath }, {
    pgMajors: [15],
    visibility: Visibility.PUBLIC,
  });
  await client.reviewExtension({ name: "bench", sha256, decision: ReviewDecision.APPROVE });
  const { token } = await client.issueDownloadToken({ tenantId: "bench", endpointId: "bench", sha256: [sha256], ttlSeconds: 3600 });

  const cacheDir = join(root, "cache");
  const cache = await BundleCache.open({
    dir: cacheDir,
    maxBytes: 4 * size,
    upstream: client,
    verifyKeys: (await loadVerifyKeySet(signingKeyFiles.jwksPath)).keys,
    logger,
  });
  const cacheServer = await startServer({ port: 0, auth: { insecure: true }, logger, services: [bundleCacheRegistration(cache, server.url)] });
  const cacheClient = createClient(ExtensionStoreService, createClientTransport({ baseUrl: cacheServer.url }));

  /** Consumes a byte stream, hashing it; checks the sha256 and size. */
  async function drain(body: AsyncIterable<Uint8Array>): Promise<void> {
    const hash = createHash("sha256");
    let bytes = 0;
    for await (const chunk of body) {
      hash.update(chunk);
      bytes += chunk.byteLength;
    }
    if (bytes !== size || hash.digest("hex") !== sha256) throw new Error("downloaded bytes do not match the bundle");
  }
  async function* chunksOf(client: typeof cacheClient): AsyncGenerator<Uint8Array> {
    for await (const m of client.downloadBundle({ sha256, downloadToken: token })) {
      if (m.msg.case === "chunk") yield m.msg.value;
    }
  }
  /** Median and best of the rounds, in ms. */
  async function timed(run: () => Promise<void>, before?: () => Promise<void>): Promise<{ median: number; best: number }> {
    const times: number[] = [];
    for (let i = 0; i < rounds; i += 1) {
      await before?.();
      const start = process.hrtime.bigint();
      await run();
      times.push(Number(process.hrtime.bigint() - start) / 1e6);
    }
    times.sort((a, b) => a - b);
    return { median: times[Math.floor(times.length / 2)]!, best: times[0]! };
  }
  const emptyCache = async () => {
    await rm(cacheDir, { recursive: true, force: true });
    await mkdir(cacheDir);
  };

  const baselineMs = await timed(async () => drain((await blobs.get(bundleKey("bench", sha256))).body));
  const storeMs = await timed(() => drain(chunksOf(client)));
  // Cold cache: a fresh BundleCache over an empty directory each round.
  let coldCache: BundleCache | undefined;
  let coldServer: Awaited<ReturnType<typeof startServer>> | undefined;
  const coldMs = await timed(
    async () => {
      await drain(chunksOf(createClient(ExtensionStoreService, createClientTransport({ baseUrl: coldServer!.url }))));
    },
    async () => {
      await coldServer?.close();
      await emptyCache();
      coldCache = await BundleCache.open({
        dir: cacheDir,
        maxBytes: 4 * size,
        upstream: client,
        verifyKeys: (await loadVerifyKeySet(signingKeyFiles.jwksPath)).keys,
        logger,
      });
      coldServer = await startServer({ port: 0, auth: { insecure: true }, logger, services: [bundleCacheRegistration(coldCache, server.url)] });
    },
  );
  await coldServer?.close();
  await emptyCache();
  await drain(chunksOf(cacheClient)); // warm it
  const warmMs = await timed(() => drain(chunksOf(cacheClient)));
  if (cache.stats().upstreamFetches !== 1) throw new Error(`warm runs fetched upstream ${cache.stats().upstreamFetches} times`);

  const mb = size / (1024 * 1024);
  const rate = (ms: number) => mb / (ms / 1000);
  const line = (label: string, t: { median: number; best: number }) =>
    `${label.padEnd(34)} median ${rate(t.median).toFixed(0).padStart(5)} MB/s (ratio ${(rate(t.median) / rate(baselineMs.median)).toFixed(2)})` +
    `   best ${rate(t.best).toFixed(0).padStart(5)} MB/s (ratio ${(rate(t.best) / rate(baselineMs.best)).toFixed(2)})`;
  console.log(`bundle: ${mb.toFixed(1)} MiB, ${rounds} rounds each, sha256 checked on every read; ratios against the baseline`);
  console.log(line("baseline: blob store read", baselineMs));
  console.log(line("store: DownloadBundle", storeMs));
  console.log(line("cache mode, cold (fetch upstream)", coldMs));
  console.log(line("cache mode, warm (hit)", warmMs));

  await cacheServer.close();
  await server.close();
  await blobs.close();
} finally {
  await rm(root, { recursive: true, force: true });
}
