import { createHash } from "node:crypto";
import type { BigIntStats } from "node:fs";
import { open, opendir, stat, unlink } from "node:fs/promises";
import { join } from "node:path";
import { BlobPutCancelledError, BlobSizeMismatchError, BlobTooLargeError } from "./blob-errors.js";
import type { PutOptions } from "./blob-store.js";
import { spoolFilePath, spoolFileSuffix, spoolOwnerMayLive, spoolOwnerOf } from "./spool-owner.js";

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
  const path = spoolFilePath(dir, "put");
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

/** A spool file named by an older version (no owner in the name) is left over once this old. */
const unownedSpoolAgeMs = 60 * 60 * 1000;
const unownedSpoolName = /^(publish-)?[0-9a-f-]{36}(\.tar)?\.part$/;

/**
 * Removes the spool files in `dir` that no live process owns: their writer
 * (pid and start time, on this host) is gone, e.g. killed with SIGKILL
 * mid-upload. Files of live processes, this one's or another replica's
 * sharing the directory, and of other hosts are kept. A missing dir is fine.
 */
export async function removeOrphanedSpoolFiles(dir: string): Promise<void> {
  let entries;
  try {
    entries = await opendir(dir);
  } catch {
    return;
  }
  const now = Date.now();
  for await (const entry of entries) {
    if (!entry.isFile() || !entry.name.endsWith(spoolFileSuffix)) continue;
    const path = join(dir, entry.name);
    const owner = spoolOwnerOf(entry.name);
    // Other names are not ours: a spool dir may be the OS temp dir.
    const orphaned = owner
      ? !(await spoolOwnerMayLive(owner))
      : unownedSpoolName.test(entry.name) &&
        (await stat(path).then((stats) => now - stats.mtimeMs > unownedSpoolAgeMs, () => false));
    if (orphaned) await unlink(path).catch(() => undefined);
  }
}

/**
 * Sweeps one spool directory at start (sweep()) and then at most once per
 * interval while files are spooled (sweepIfDue() before each new one), so the
 * leftovers of a replica that died next to a running one go too, with no timer.
 */
export class SpoolSweeper {
  private lastSweepMs = -Infinity;
  private running: Promise<void> | undefined;

  constructor(
    readonly dir: string,
    private readonly intervalMs = 10 * 60 * 1000,
  ) {}

  async sweep(): Promise<void> {
    this.lastSweepMs = Date.now();
    await removeOrphanedSpoolFiles(this.dir);
  }

  /** Starts a sweep in the background when the last one is older than the interval. */
  sweepIfDue(): void {
    if (this.running || Date.now() - this.lastSweepMs < this.intervalMs) return;
    this.running = this.sweep()
      .catch(() => undefined)
      .finally(() => (this.running = undefined));
  }
}
