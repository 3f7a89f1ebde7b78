import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, createClient } from "@connectrpc/connect";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExtensionStoreService } from "../gen/pgmesh/extensionstore/v1/extension_store_pb.js";
import { generateKeyFiles, loadSigningKey } from "../src/auth/index.js";
import { openBlobStore, type BlobStore } from "../src/blob/index.js";
import { ExtensionStore, extensionStoreRegistration } from "../src/extstore/index.js";
import { createClientTransport, type ServerHandle } from "../src/server/index.js";
import { callFailure } from "./helpers/call-failure.js";
import { endpointRef } from "./helpers/epufs-calls.js";
import { startEpufsTestServer, type EpufsTestServer } from "./helpers/epufs-server.js";
import { startS3rver, type S3rverHandle } from "./helpers/s3rver.js";
import { startTestServer } from "./helpers/test-server.js";

/** Both services on one s3rver, which each test's outage stops. */
describe("a blob store outage (s3rver stopped)", () => {
  let s3rver: S3rverHandle;
  let epufs: EpufsTestServer;
  let extstore: ServerHandle;
  let extstoreBlobs: BlobStore;
  let dir: string;

  beforeAll(async () => {
    s3rver = await startS3rver();
    epufs = await startEpufsTestServer({ s3rver });
    dir = await mkdtemp(join(tmpdir(), "pgmesh-outage-"));
    extstoreBlobs = await openBlobStore(s3rver.url("extstore"), s3rver.blobStoreOptions);
    const store = new ExtensionStore({
      blobs: extstoreBlobs,
      signingKey: await loadSigningKey((await generateKeyFiles(join(dir, "download-key"))).privateKeyPath),
      logger: pino({ level: "silent" }),
      spoolDir: dir,
    });
    extstore = await startTestServer({ services: [extensionStoreRegistration(store)] });
    await s3rver.stop();
  });
  afterAll(async () => {
    await epufs?.close();
    await extstore?.close();
    await extstoreBlobs?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("answers UNAVAILABLE from Epufs", async () => {
    const error = await callFailure(epufs.client().listFiles({ endpoint: endpointRef("t1", "tl1", "e1") }));
    expect(Code[error.code], error.rawMessage).toBe("Unavailable");
    expect(error.rawMessage).toMatch(/^blob storage is unavailable .*; retry later$/);
  });

  it("answers UNAVAILABLE from the ExtensionStore", async () => {
    const client = createClient(ExtensionStoreService, createClientTransport({ baseUrl: extstore.url }));
    const error = await callFailure(client.listExtensions({}));
    expect(Code[error.code], error.rawMessage).toBe("Unavailable");
    expect(error.rawMessage).toMatch(/^blob storage is unavailable .*; retry later$/);
  });
});
