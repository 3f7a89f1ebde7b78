import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll } from "vitest";
import { startS3rver, type S3rverHandle } from "./s3rver.js";
import { stopAllServiceProcesses } from "./service-process.js";
import { createTestKeys, type TestKeys } from "./test-keys.js";

/** One store location that several replicas share, with the environment they need to reach it. */
export interface SharedStore {
  readonly name: string;
  /** A fresh location for one run: the --storage URL and the environment for the processes. */
  location(run: string): { readonly url: string; readonly env: Record<string, string> };
}

export interface ReplicaEnvironment {
  /** Bearer-token keys: give servers keys.jwksPath as --auth-keys. */
  readonly keys: () => TestKeys;
  /** A temp dir removed after the file. */
  readonly work: () => string;
  /** One local directory and one s3rver bucket. */
  readonly stores: readonly SharedStore[];
}

/**
 * Registers beforeAll/afterAll hooks for a replicas test file: test keys, an
 * s3rver, a temp dir, and killing every service process the file started.
 */
export function replicaEnvironment(): ReplicaEnvironment {
  let keys: TestKeys | undefined;
  let s3rver: S3rverHandle | undefined;
  let work: string | undefined;
  let runs = 0;
  beforeAll(async () => {
    keys = await createTestKeys();
    s3rver = await startS3rver();
    work = await mkdtemp(join(tmpdir(), "pgmesh-replicas-"));
  });
  afterAll(async () => {
    await stopAllServiceProcesses();
    await s3rver?.stop();
    await keys?.remove();
    if (work) await rm(work, { recursive: true, force: true });
  });
  const unique = (run: string) => `${run}-${(runs += 1)}`;
  return {
    keys: () => keys!,
    work: () => work!,
    stores: [
      { name: "one local directory", location: (run) => ({ url: pathToFileURL(join(work!, unique(run))).href, env: {} }) },
      { name: "one s3rver bucket", location: (run) => ({ url: s3rver!.url(unique(run)), env: s3rver!.env }) },
    ],
  };
}
