import { createHash, randomUUID } from "node:crypto";
import type { BigIntStats } from "node:fs";
import { open, opendir, stat, unlink } from "node:fs/promises";
import { join } from "node:path";
import { BlobPutCancelledError, BlobSizeMismatchError, BlobTooLargeError } from "./blob-errors.js";
import type { PutOptions } from "./blob-store.js";

export interface SpoolFileOptions extends PutOptions {
  /** fsync the file before closing it (the local backend renames it into place). */
  readonly sync: boolean;
  /** Compute the MD5 of the content (the S3 backend sends it as Content-MD5). */
  readonly md5: boolean;
}

export interface SpoolFile {
  readonly path: string;
  readonly size: number;
  readonly stats: BigIntStats;
  /** Base64 MD5 of the content when asked for. */
  readonly md5Base64?: string;
}

/** Suffix of spool files; they live in a directory no listing looks into. */
export const spoolFileSuffix = ".part";

/**
 * Writes `body` to a new file in `dir`, enforcing maxBytes/expectedBytes and
 * the signal. On any failure the file is removed and the error is rethrown
 * (BlobTooLargeError, BlobSizeMismatchError, BlobPutCancelledError, or what
 * the body or the file system threw).
 */
export async function writeSpoolFile(
  dir: string,
  key: string,
  body: AsyncIterable<Uint8Array>,
  options: SpoolFileOptions,
): Promise<SpoolFile> {
  const { maxBytes, expectedBytes, signal } = options;
  if (maxBytes !== undefined && expectedBytes !== undefined && expectedBytes > maxBytes) {
    throw new BlobTooLargeError(key, maxBytes, expectedBytes);
  }
  if (signal?.aborted) throw new BlobPutCancelledError(key, signal.reason);
  const path = join(dir, `${randomUUID()}${spoolFileSuffix}`);
  const file = await open(path, "wx", 0o600);
  const hash = options.md5 ? createHash("md5") : undefined;
  let size = 0;
  try {
    for await (const chunk of abortable(body, key, signal)) {
      size += chunk.byteLength;
      if (maxBytes !== undefined && size > maxBytes) throw new BlobTooLargeError(key, maxBytes);
      if (expectedBytes !== undefined && size > expectedBytes) {
        throw new BlobSizeMismatchError(key, expectedBytes, size);
      }
      hash?.update(chunk);
      await file.write(chunk);
    }
    if (expectedBytes !== undefined && size !== expectedBytes) {
      throw new BlobSizeMismatchError(key, expectedBytes, size);
    }
    if (options.sync) await file.sync();
    const stats = await file.stat({ bigint: true });
    await file.close();
    if (signal?.aborted) throw new BlobPutCancelledError(key, signal.reason);
    return { path, size, stats, ...(hash ? { md5Base64: hash.digest("base64") } : {}) };
  } catch (error) {
    await file.close().catch(() => undefined);
    await unlink(path).catch(() => undefined);
    throw error;
  }
}

/**
 * Iterates `body`, but stops with BlobPutCancelledError as soon as the signal
 * aborts, even while waiting for the next chunk.
 */
async function* abortable(
  body: AsyncIterable<Uint8Array>,
  key: string,
  signal: AbortSignal | undefined,
): AsyncGenerator<Uint8Array> {
  if (signal === undefined) {
    yield* body;
    return;
  }
  const iterator = body[Symbol.asyncIterator]();
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(new BlobPutCancelledError(key, signal.reason));
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
  });
  aborted.catch(() => undefined);
  try {
    for (;;) {
      const next = await Promise.race([iterator.next(), aborted]);
      if (next.done) return;
      yield next.value;
    }
  } finally {
    if (onAbort) signal.removeEventListener("abort", onAbort);
    // Release the source (e.g. a request stream) when we stop early.
    void Promise.resolve(iterator.return?.()).catch(() => undefined);
  }
}

/** Spool files older than this are left over from a crashed process. */
const staleSpoolAgeMs = 60 * 60 * 1000;

/** Removes spool files in `dir` older than an hour (a crashed process's leftovers); a missing dir is fine. */
export async function removeStaleSpoolFiles(dir: string): Promise<void> {
  const now = Date.now();
  let entries;
  try {
    entries = await opendir(dir);
  } catch {
    return;
  }
  for await (const entry of entries) {
    if (!entry.isFile() || !entry.name.endsWith(spoolFileSuffix)) continue;
    const path = join(dir, entry.name);
    const stats = await stat(path).catch(() => undefined);
    if (stats && now - stats.mtimeMs > staleSpoolAgeMs) await unlink(path).catch(() => undefined);
  }
}
