import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { createClient, type Client } from "@connectrpc/connect";
import { EpufsService } from "../../gen/pgmesh/epufs/v1/epufs_pb.js";
import { openBlobStore, type BlobStore } from "../../src/blob/index.js";
import { compileEpufsOptions, Epufs, epufsServerParts, type EpufsOptions } from "../../src/epufs/index.js";
import { createClientTransport, type ServerHandle } from "../../src/server/index.js";
import type { S3rverHandle } from "./s3rver.js";
import { startTestServer } from "./test-server.js";
import type { TestKeys } from "./test-keys.js";

export interface EpufsTestServer {
  readonly server: ServerHandle;
  readonly url: string;
  /** The store the server writes to, to check what is (not) stored. */
  readonly store: BlobStore;
  /** A gRPC client sending `token` (none when undefined). */
  client(token?: string): Client<typeof EpufsService>;
  close(): Promise<void>;
}

export interface EpufsTestServerOptions {
  /** Verify tokens with these keys; without them the server runs insecure. */
  readonly keys?: TestKeys;
  /** Store in s3rver (a fresh prefix) instead of a temp directory. */
  readonly s3rver?: S3rverHandle;
  readonly epufs?: EpufsOptions;
}

let s3Prefixes = 0;

/** An in-process Epufs on a free port over a fresh local directory or s3rver prefix. */
export async function startEpufsTestServer(options: EpufsTestServerOptions = {}): Promise<EpufsTestServer> {
  let dir: string | undefined;
  let store: BlobStore;
  if (options.s3rver) {
    s3Prefixes += 1;
    store = await openBlobStore(
      options.s3rver.url(`epufs-${process.pid}-${s3Prefixes}`),
      options.s3rver.blobStoreOptions,
    );
  } else {
    dir = await mkdtemp(join(tmpdir(), "pgmesh-epufs-"));
    store = await openBlobStore(pathToFileURL(dir).href);
  }
  const auth = options.keys ? { verifier: options.keys.verifier } : ({ insecure: true } as const);
  const epufs = new Epufs(store, compileEpufsOptions(options.epufs));
  const server = await startTestServer({ ...(options.keys ? { keys: options.keys } : {}), ...epufsServerParts(epufs, auth) });
  return {
    server,
    url: server.url,
    store,
    client: (token) => createClient(EpufsService, createClientTransport({ baseUrl: server.url, ...(token ? { token } : {}) })),
    close: async () => {
      // A refused client stream stays half-open: do not wait 10 s for it.
      await server.close({ graceMs: 500 });
      await store.close();
      if (dir) await rm(dir, { recursive: true, force: true });
    },
  };
}
