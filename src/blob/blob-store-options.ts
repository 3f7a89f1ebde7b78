import { tmpdir } from "node:os";
import { join } from "node:path";
import type { S3ClientConfig } from "@aws-sdk/client-s3";

/** Settings for openBlobStore() beyond the URL; the S3 ones mirror the standard AWS environment. */
export interface BlobStoreOptions {
  /** Custom S3 endpoint (AWS_ENDPOINT_URL); path-style addressing is used with it. */
  readonly s3Endpoint?: string;
  /** AWS_REGION; default "us-east-1". */
  readonly s3Region?: string;
  /** Explicit credentials; otherwise the SDK's default chain reads the environment. */
  readonly s3Credentials?: S3ClientConfig["credentials"];
  /** Where S3 puts spool their bodies; default a "pgmesh-blob-spool" directory in the OS temp dir. */
  readonly spoolDir?: string;
  /**
   * Whether the S3 server enforces conditional puts (--s3-conditional-writes):
   * "auto" (default) probes it when the store opens, "on"/"off" skip the probe.
   * A store never trusts a condition the server would silently ignore.
   */
  readonly s3ConditionalWrites?: S3ConditionalWrites;
}

export const s3ConditionalWritesModes = ["auto", "on", "off"] as const;
export type S3ConditionalWrites = (typeof s3ConditionalWritesModes)[number];

export interface CompiledBlobStoreOptions {
  readonly s3Endpoint?: string;
  readonly s3Region: string;
  readonly s3Credentials?: S3ClientConfig["credentials"];
  readonly spoolDir: string;
  readonly s3ConditionalWrites: S3ConditionalWrites;
}

export function compileBlobStoreOptions(options: BlobStoreOptions = {}): CompiledBlobStoreOptions {
  return {
    ...(options.s3Endpoint ? { s3Endpoint: options.s3Endpoint } : {}),
    s3Region: options.s3Region || "us-east-1",
    ...(options.s3Credentials ? { s3Credentials: options.s3Credentials } : {}),
    spoolDir: options.spoolDir ?? join(tmpdir(), "pgmesh-blob-spool"),
    s3ConditionalWrites: options.s3ConditionalWrites ?? "auto",
  };
}

/** The standard AWS variables a binary passes on (read once, in cmd/). */
export function blobStoreOptionsFromEnv(env: NodeJS.ProcessEnv): BlobStoreOptions {
  return {
    ...(env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL
      ? { s3Endpoint: env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL }
      : {}),
    ...(env.AWS_REGION || env.AWS_DEFAULT_REGION ? { s3Region: env.AWS_REGION || env.AWS_DEFAULT_REGION } : {}),
  };
}
