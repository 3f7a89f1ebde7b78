import { createHash } from "node:crypto";
import { open, unlink } from "node:fs/promises";
import { spoolFilePath } from "../blob/index.js";
import { BundleRejectedError } from "./extension-store-errors.js";
import { inspectBundle, type BundleLimits, type BundleManifest } from "./inspect-bundle.js";

/** A bundle received and validated into a local spool file, not yet stored. */
export interface ReceivedBundle {
  readonly path: string;
  readonly sha256: string;
  readonly size: number;
  readonly manifest: BundleManifest;
  /** Removes the spool file. */
  dispose(): Promise<void>;
}

/**
 * Streams the tar bytes into a spool file in `spoolDir` while hashing them
 * and validating every entry (inspectBundle). Nothing reaches the blob store
 * here; on any failure the spool file is removed and the error rethrown
 * (BundleRejectedError for a bad or oversized bundle).
 */
export async function receiveBundle(
  chunks: AsyncIterable<Uint8Array>,
  extensionName: string,
  limits: BundleLimits,
  spoolDir: string,
): Promise<ReceivedBundle> {
  // Named after this process, so a restart or a replica sharing spoolDir sweeps it if we are killed.
  const path = spoolFilePath(spoolDir, "publish");
  const file = await open(path, "wx", 0o600);
  const hash = createHash("sha256");
  let size = 0;
  async function* spooled(): AsyncGenerator<Uint8Array> {
    for await (const chunk of chunks) {
      size += chunk.byteLength;
      if (size > limits.maxBundleBytes) {
        throw new BundleRejectedError(
          "too_large",
          undefined,
          `it is larger than ${limits.maxBundleBytes} bytes, the limit per bundle (--max-bundle-bytes)`,
        );
      }
      hash.update(chunk);
      await file.write(chunk);
      yield chunk;
    }
  }
  try {
    const manifest = await inspectBundle(spooled(), extensionName, limits);
    await file.close();
    return {
      path,
      sha256: hash.digest("hex"),
      size,
      manifest,
      dispose: () => unlink(path).catch(() => undefined),
    };
  } catch (error) {
    await file.close().catch(() => undefined);
    await unlink(path).catch(() => undefined);
    throw error;
  }
}
