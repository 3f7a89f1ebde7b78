/**
 * Epufs benchmark: put+get of 8 KiB and 1 MiB files through a running Epufs
 * over gRPC (h2c, JWT auth, local-directory store), against the same put+get
 * called directly on the blob store, in the same run. Prints ops/s (one op =
 * one put plus one get of the whole file) and the ratio service/direct, and
 * for reference the same Epufs called in-process (no transport).
 *
 *   npx tsc -p tsconfig.json && node dist/bench/epufs.js
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { createClient } from "@connectrpc/connect";
import { pino } from "pino";
import { EpufsService } from "../gen/pgmesh/epufs/v1/epufs_pb.js";
import {
  createTokenVerifier,
  generateKeyFiles,
  loadSigningKey,
  loadVerifyKeySet,
  signToken,
} from "../src/auth/index.js";
import { openBlobStore, type BlobStore } from "../src/blob/index.js";
import { compileEpufsOptions, Epufs, epufsServerParts } from "../src/epufs/index.js";
import { createClientTransport, startServer } from "../src/server/index.js";

const chunkBytes = 256 * 1024;
const cases = [
  { name: "8 KiB", size: 8 * 1024, iterations: 300 },
  { name: "1 MiB", size: 1024 * 1024, iterations: 50 },
];
const endpoint = { tenantId: "bench", timelineId: "tl", endpointId: "ep" };

async function* chunksOf(data: Uint8Array): AsyncGenerator<Uint8Array> {
  for (let offset = 0; offset < data.byteLength; offset += chunkBytes) yield data.subarray(offset, offset + chunkBytes);
}

async function drain(body: AsyncIterable<Uint8Array>): Promise<number> {
  let bytes = 0;
  for await (const chunk of body) bytes += chunk.byteLength;
  return bytes;
}

/**
 * ops/s of each operation, measured in interleaved rounds (A B C A B C ...) so
 * that a change in machine load over the run hits all of them alike.
 */
async function timeInterleaved(
  iterations: number,
  ops: ReadonlyArray<() => Promise<void>>,
  rounds = 5,
): Promise<number[]> {
  for (const op of ops) for (let i = 0; i < 5; i++) await op(); // warm-up
  const nanos = ops.map(() => 0n);
  const perRound = Math.ceil(iterations / rounds);
  for (let round = 0; round < rounds; round++) {
    for (const [index, op] of ops.entries()) {
      const start = process.hrtime.bigint();
      for (let i = 0; i < perRound; i++) await op();
      nanos[index]! += process.hrtime.bigint() - start;
    }
  }
  return nanos.map((total) => (perRound * rounds) / (Number(total) / 1e9));
}

const work = await mkdtemp(join(tmpdir(), "pgmesh-bench-epufs-"));
const keyFiles = await generateKeyFiles(join(work, "keys"));
const verifier = createTokenVerifier(await loadVerifyKeySet(keyFiles.jwksPath));
const token = await signToken(
  await loadSigningKey(keyFiles.privateKeyPath),
  { scope: "compute", ...endpoint },
  { ttlSec: 3600 },
);
const serviceStore: BlobStore = await openBlobStore(pathToFileURL(join(work, "service")).href);
const inProcessStore: BlobStore = await openBlobStore(pathToFileURL(join(work, "in-process")).href);
const inProcess = new Epufs(inProcessStore, compileEpufsOptions());
const directStore: BlobStore = await openBlobStore(pathToFileURL(join(work, "direct")).href);
const auth = { verifier };
const server = await startServer({
  port: 0,
  auth,
  logger: pino({ level: "silent" }),
  ...epufsServerParts(new Epufs(serviceStore, compileEpufsOptions()), auth),
});
const client = createClient(EpufsService, createClientTransport({ baseUrl: server.url, token }));

console.log(`epufs benchmark: put+get per op, local-directory store, gRPC over h2c with JWT auth (node ${process.version})`);
for (const { name, size, iterations } of cases) {
  const data = new Uint8Array(size).map((_, i) => (i * 7) % 256);
  const directOp = async () => {
    await directStore.put("tenants/bench/pgdata/pg_stat/pgstat.stat", chunksOf(data));
    const object = await directStore.get("tenants/bench/pgdata/pg_stat/pgstat.stat");
    if ((await drain(object.body)) !== size) throw new Error("direct get returned the wrong size");
  };
  const serviceOp = async () => {
    await client.putFile(
      (async function* () {
        yield { msg: { case: "header" as const, value: { endpoint, path: "pg_stat/pgstat.stat" } } };
        for await (const chunk of chunksOf(data)) yield { msg: { case: "chunk" as const, value: chunk } };
      })(),
    );
    let bytes = 0;
    for await (const message of client.getFile({ endpoint, path: "pg_stat/pgstat.stat" })) {
      if (message.msg.case === "chunk") bytes += message.msg.value.byteLength;
    }
    if (bytes !== size) throw new Error("service get returned the wrong size");
  };
  // Where the gap comes from: the same Epufs called in-process (auth, path and quota checks, no transport).
  const inProcessOp = async () => {
    await inProcess.putFile(undefined, { endpoint, path: "pg_stat/pgstat.stat" }, chunksOf(data));
    const got = await inProcess.getFile(undefined, endpoint, "pg_stat/pgstat.stat", "");
    if (got.notModified || (await drain(got.body)) !== size) throw new Error("in-process get returned the wrong size");
  };
  const [direct, service, local] = (await timeInterleaved(iterations, [directOp, serviceOp, inProcessOp])) as [
    number,
    number,
    number,
  ];
  console.log(
    `${name.padEnd(6)} x${String(iterations).padEnd(4)} blob store direct ${direct.toFixed(0).padStart(6)} ops/s` +
      `   epufs over gRPC ${service.toFixed(0).padStart(6)} ops/s   ratio ${(service / direct).toFixed(2)}` +
      `   (epufs in-process ${local.toFixed(0)} ops/s, ratio ${(local / direct).toFixed(2)})`,
  );
}

await server.close({ graceMs: 1000 });
await serviceStore.close();
await inProcessStore.close();
await directStore.close();
await rm(work, { recursive: true, force: true });
