import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { EpufsService } from "../gen/pgmesh/epufs/v1/epufs_pb.js";
import { createClientTransport } from "../src/server/index.js";
import { content, endpointRef, putFile, type EpufsClient } from "./helpers/epufs-calls.js";
import { startS3rver, type S3rverHandle } from "./helpers/s3rver.js";
import { spawnServiceProcess, stopAllServiceProcesses } from "./helpers/service-process.js";
import { createTestKeys, type TestKeys } from "./helpers/test-keys.js";

let keys: TestKeys;
let s3rver: S3rverHandle;
let work: string;

beforeAll(async () => {
  keys = await createTestKeys();
  s3rver = await startS3rver();
  work = await mkdtemp(join(tmpdir(), "pgmesh-replicas-epufs-"));
});
afterEach(() => stopAllServiceProcesses());
afterAll(async () => {
  await s3rver?.stop();
  await keys?.remove();
  if (work) await rm(work, { recursive: true, force: true });
});

/** Where two replicas share one store, and the environment they need. */
const backends = [
  { name: "one local directory", storage: (run: string) => ({ url: pathToFileURL(join(work, run)).href, env: {} }) },
  { name: "one s3rver bucket", storage: (run: string) => ({ url: s3rver.url(run), env: s3rver.env }) },
];

describe.each(backends)("two Epufs replicas on $name", (backend) => {
  it("hold the per-endpoint quota together: concurrent puts split over both never exceed it", async () => {
    const { url, env } = backend.storage(`quota-${Date.now()}`);
    const args = ["--storage", url, "--auth-keys", keys.jwksPath, "--endpoint-quota-bytes", "1000000"];
    const replicas = await Promise.all([spawnServiceProcess("epufs", args, env), spawnServiceProcess("epufs", args, env)]);
    const token = await keys.computeToken("t1", "tl1", "ep1");
    const clients: EpufsClient[] = replicas.map((replica) =>
      createClient(EpufsService, createClientTransport({ baseUrl: replica.url, token })),
    );
    const ep = endpointRef("t1", "tl1", "ep1");
    const fileBytes = 200 * 1024;
    const puts = await Promise.allSettled(
      Array.from({ length: 6 }, (_, i) =>
        putFile(clients[i % 2]!, ep, `pg_stat/db_${i}.stat`, content(fileBytes, i), { size: fileBytes }),
      ),
    );
    // 4 × 200 KiB fit in 1,000,000 bytes, a 5th does not.
    expect(puts.filter((put) => put.status === "fulfilled")).toHaveLength(4);
    for (const put of puts) {
      if (put.status === "rejected") expect(ConnectError.from(put.reason).code).toBe(Code.ResourceExhausted);
    }
    const stored = (await clients[0]!.listFiles({ endpoint: ep })).files;
    expect(stored.reduce((sum, file) => sum + Number(file.size), 0)).toBe(4 * fileBytes);
  });
});
