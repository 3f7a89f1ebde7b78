import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import type { BlobStoreOptions } from "../../src/blob/index.js";

/** A running s3rver (an S3-compatible server) with one bucket, for tests. */
export interface S3rverHandle {
  /** e.g. "http://127.0.0.1:40123": pass as AWS_ENDPOINT_URL / s3Endpoint. */
  readonly endpoint: string;
  readonly bucket: string;
  /** Environment for child processes: endpoint, region and s3rver's fixed credentials. */
  readonly env: Record<string, string>;
  /** The same, for openBlobStore() in this process. */
  readonly blobStoreOptions: BlobStoreOptions;
  /** `s3://<bucket>/<prefix>` */
  url(prefix: string): string;
  /** Kills the server and removes its data directory. */
  stop(): Promise<void>;
}

/** s3rver accepts exactly these credentials. */
const accessKeyId = "S3RVER";
const secretAccessKey = "S3RVER";

/** Where s3rver runs: loopback on this host by default. */
export interface S3rverPlacement {
  /** The address it listens on and clients use. */
  readonly host?: string;
  /** A command prefix it runs under, e.g. `ip netns exec HOST` (VirtualHost.launcher). */
  readonly launcher?: readonly string[];
}

/**
 * Starts s3rver (through s3rver-main.cjs) in a child process on a free port
 * (it binds port 0 and prints the port), under `node --openssl-legacy-provider`
 * (without it, paginated listings fail), with a fresh data directory and
 * `bucket` created.
 */
export async function startS3rver(bucket = "pgmesh-test", placement: S3rverPlacement = {}): Promise<S3rverHandle> {
  const host = placement.host ?? "127.0.0.1";
  const directory = await mkdtemp(join(tmpdir(), "pgmesh-s3rver-"));
  // s3rver's own command line, with fixes for its races under concurrent puts and deletes (see the file).
  const main = join(import.meta.dirname, "s3rver-main.cjs");
  const [command, ...args] = [
    ...(placement.launcher ?? []),
    process.execPath, "--openssl-legacy-provider", main, "-d", directory, "-a", host, "-p", "0", "-s", "--configure-bucket", bucket,
  ];
  const child = spawn(command!, args, { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (data: Buffer) => (stderr += data.toString()));
  try {
    const port = await listeningPort(child, () => stderr);
    const endpoint = `http://${host}:${port}`;
    return {
      endpoint,
      bucket,
      env: {
        AWS_ENDPOINT_URL: endpoint,
        AWS_REGION: "us-east-1",
        AWS_ACCESS_KEY_ID: accessKeyId,
        AWS_SECRET_ACCESS_KEY: secretAccessKey,
      },
      blobStoreOptions: {
        s3Endpoint: endpoint,
        s3Region: "us-east-1",
        s3Credentials: { accessKeyId, secretAccessKey },
      },
      url: (prefix) => `s3://${bucket}/${prefix}`,
      stop: async () => {
        await stopChild(child);
        await rm(directory, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await stopChild(child);
    await rm(directory, { recursive: true, force: true });
    throw error;
  }
}

function listeningPort(child: ChildProcess, stderr: () => string): Promise<number> {
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.on("line", (line) => {
      const match = /S3rver listening on .*:(\d+)/.exec(line);
      if (match) {
        lines.close();
        resolve(Number(match[1]));
      }
    });
    child.once("exit", (code, signal) =>
      reject(new Error(`s3rver exited before listening (code ${code}, signal ${signal}): ${stderr()}`)),
    );
    child.once("error", reject);
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  await exited;
}
