import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, open, readdir, readFile, rename, stat, unlink, utimes, writeFile, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import type { Logger } from "pino";
import {
  DownloadBundleResponseSchema,
  ExtensionVersionSchema,
  type DownloadBundleRequest,
  type DownloadBundleResponse,
  type ExtensionStoreService,
  type ExtensionVersion,
} from "../../gen/pgmesh/extensionstore/v1/extension_store_pb.js";
import { removeOrphanedSpoolFiles, spoolFilePath } from "../blob/index.js";
import { maxChunkBytes, splitChunks } from "../server/index.js";
import { requireNamedBundle, verifyDownloadToken, type DownloadVerifyKey } from "./download-token.js";
import { checkSha256 } from "./check-sha256.js";
import { UpstreamFetch } from "./upstream-fetch.js";

export interface BundleCacheOptions {
  /** Local directory holding `<sha256>.tar` and `<sha256>.info.binpb`. */
  readonly dir: string;
  /** Most bytes of bundles kept; least recently used ones are evicted beyond it. */
  readonly maxBytes: number;
  /** The upstream store (a client without compression). */
  readonly upstream: Client<typeof ExtensionStoreService>;
  /** The upstream store's public download-token key(s). */
  readonly verifyKeys: readonly DownloadVerifyKey[];
  readonly logger: Logger;
  /** The clock (default Date.now). */
  readonly now?: () => number;
}

/** What the cache did since it opened. */
export interface BundleCacheStats {
  readonly hits: number;
  readonly misses: number;
  readonly upstreamFetches: number;
  readonly evictions: number;
  readonly corruptEntries: number;
  readonly bytes: number;
  readonly entries: number;
}

interface CachedBundle {
  readonly size: number;
  readonly info: ExtensionVersion;
}

const infoSuffix = ".info.binpb";
const tarSuffix = ".tar";
/** How an older version named partial downloads (no owner in the name): dropped at open. */
const legacyPartMarker = ".part-";

/**
 * The node-local cache mode of the extension store: serves DownloadBundle
 * from a local directory, fetching a missing bundle from the upstream store
 * with the caller's download token. Tokens are verified locally with the
 * upstream's public key before any byte is served; concurrent misses for one
 * bundle share one upstream fetch and stream its bytes as they arrive;
 * eviction is least recently used, by bytes;
 * every hit is re-hashed before it is served, and an entry whose bytes no
 * longer match its sha256 is dropped and fetched again.
 */
export class BundleCache {
  private readonly entries = new Map<string, CachedBundle>(); // in LRU order: oldest first
  private readonly inflight = new Map<string, UpstreamFetch>();
  private totalBytes = 0;
  private counters = { hits: 0, misses: 0, upstreamFetches: 0, evictions: 0, corruptEntries: 0 };
  private readonly now: () => number;

  private constructor(private readonly options: BundleCacheOptions) {
    this.now = options.now ?? Date.now;
  }

  /** Opens the cache directory: drops partial downloads, loads entries oldest first, evicts beyond maxBytes. */
  static async open(options: BundleCacheOptions): Promise<BundleCache> {
    if (!Number.isSafeInteger(options.maxBytes) || options.maxBytes <= 0) {
      throw new Error(`cache size must be a positive number of bytes (--cache-bytes), got ${options.maxBytes}`);
    }
    const cache = new BundleCache(options);
    await mkdir(options.dir, { recursive: true });
    // Partial downloads of a killed process; a live one's (another replica sharing the dir) stay.
    await removeOrphanedSpoolFiles(options.dir);
    const found: { sha256: string; size: number; mtimeMs: number; info: ExtensionVersion }[] = [];
    for (const name of await readdir(options.dir)) {
      const path = join(options.dir, name);
      if (name.includes(legacyPartMarker)) {
        await unlink(path).catch(() => undefined);
        continue;
      }
      if (!name.endsWith(tarSuffix)) continue;
      const sha256 = name.slice(0, -tarSuffix.length);
      try {
        const stats = await stat(path);
        const info = fromBinary(ExtensionVersionSchema, await readFile(join(options.dir, sha256 + infoSuffix)));
        found.push({ sha256, size: stats.size, mtimeMs: stats.mtimeMs, info });
      } catch {
        await cache.removeFiles(sha256);
      }
    }
    for (const entry of found.sort((a, b) => a.mtimeMs - b.mtimeMs)) {
      cache.entries.set(entry.sha256, { size: entry.size, info: entry.info });
      cache.totalBytes += entry.size;
    }
    await cache.evict(undefined);
    return cache;
  }

  stats(): BundleCacheStats {
    return { ...this.counters, bytes: this.totalBytes, entries: this.entries.size };
  }

  /** DownloadBundle from the cache: info, then chunks of at most 1 MiB. */
  async *download(request: DownloadBundleRequest, signal?: AbortSignal): AsyncGenerator<DownloadBundleResponse> {
    const sha256 = checkSha256(request.sha256);
    const claims = await verifyDownloadToken(request.downloadToken, this.options.verifyKeys, this.now());
    requireNamedBundle(claims.bundles, sha256);
    const served = await this.openVerified(sha256);
    if (served !== undefined) {
      yield* this.serveFile(served.file, served.entry.info, signal);
      return;
    }
    this.counters.misses += 1;
    yield* this.followFetch(this.fetchShared(sha256, request.downloadToken), signal);
  }

  /** The info, then the file's bytes; closes the file. */
  private async *serveFile(file: FileHandle, info: ExtensionVersion, signal?: AbortSignal): AsyncGenerator<DownloadBundleResponse> {
    try {
      yield create(DownloadBundleResponseSchema, { msg: { case: "info", value: { extension: info } } });
      const body = createReadStream("", { fd: file, start: 0, autoClose: false, highWaterMark: 256 * 1024, ...(signal ? { signal } : {}) });
      for await (const chunk of splitChunks(body)) {
        yield create(DownloadBundleResponseSchema, { msg: { case: "chunk", value: chunk } });
      }
    } finally {
      await file.close().catch(() => undefined);
    }
  }

  /**
   * Streams a bundle while the upstream fetch writes it: the info once the
   * upstream sent it, then the part file's bytes as they land. If the fetch
   * fails midway the stream ends with its error (the client checks the
   * sha256 anyway); if it already finished, the cached file is served.
   */
  private async *followFetch(fetch: UpstreamFetch, signal?: AbortSignal): AsyncGenerator<DownloadBundleResponse> {
    let file: FileHandle;
    try {
      while (!fetch.partCreated) await fetch.changed();
      file = await open(fetch.partPath, "r");
    } catch (error) {
      if (error instanceof ConnectError) throw error; // the fetch failed
      // Renamed into place before we got here: serve the cached file.
      await fetch.finished;
      const served = await this.openVerified(fetch.sha256, true);
      if (served === undefined) {
        throw new ConnectError(`bundle ${fetch.sha256} fetched from upstream did not stay in the cache; retry`, Code.Unavailable);
      }
      yield* this.serveFile(served.file, served.entry.info, signal);
      return;
    }
    try {
      while (fetch.info === undefined) await fetch.changed();
      yield create(DownloadBundleResponseSchema, { msg: { case: "info", value: { extension: fetch.info } } });
      for (let position = 0; ; ) {
        signal?.throwIfAborted();
        if (position < fetch.written) {
          const buffer = Buffer.allocUnsafe(Math.min(maxChunkBytes, fetch.written - position));
          const { bytesRead } = await file.read(buffer, 0, buffer.byteLength, position);
          if (bytesRead === 0) throw new ConnectError(`cache part file of ${fetch.sha256} is shorter than written`, Code.Internal);
          position += bytesRead;
          yield create(DownloadBundleResponseSchema, { msg: { case: "chunk", value: buffer.subarray(0, bytesRead) } });
        } else if (fetch.succeeded) {
          return;
        } else {
          await fetch.changed();
        }
      }
    } finally {
      await file.close().catch(() => undefined);
    }
  }

  /**
   * Opens a cached bundle after checking its bytes against its sha256 (unless
   * it was just fetched and checked), and marks it most recently used. A
   * corrupt entry is removed; undefined then, as for a miss.
   */
  private async openVerified(sha256: string, justFetched = false) {
    const entry = this.entries.get(sha256);
    if (entry === undefined) return undefined;
    let file;
    try {
      file = await open(this.tarPath(sha256), "r");
    } catch {
      this.forget(sha256);
      return undefined;
    }
    if (justFetched) return { file, entry };
    const hash = createHash("sha256");
    for await (const chunk of createReadStream("", { fd: file, start: 0, autoClose: false, highWaterMark: 1024 * 1024 })) {
      hash.update(chunk as Buffer);
    }
    if (hash.digest("hex") !== sha256) {
      await file.close();
      this.counters.corruptEntries += 1;
      this.options.logger.warn({ sha256 }, "cached bundle does not match its sha256; dropping it and fetching it again");
      this.forget(sha256);
      await this.removeFiles(sha256);
      return undefined;
    }
    this.counters.hits += 1;
    this.entries.delete(sha256);
    this.entries.set(sha256, entry);
    const nowSec = this.now() / 1000;
    void utimes(this.tarPath(sha256), nowSec, nowSec).catch(() => undefined);
    return { file, entry };
  }

  /** One upstream fetch per bundle at a time; later misses follow the same one. */
  private fetchShared(sha256: string, downloadToken: string): UpstreamFetch {
    let fetch = this.inflight.get(sha256);
    if (fetch === undefined) {
      const started = new UpstreamFetch(sha256, spoolFilePath(this.options.dir, "fetch"));
      this.inflight.set(sha256, started);
      void this.fetch(sha256, downloadToken, started).finally(() => this.inflight.delete(sha256));
      fetch = started;
    }
    return fetch;
  }

  /** Fetches into the part file, reporting progress; renames it into place once its sha256 checks out. */
  private async fetch(sha256: string, downloadToken: string, progress: UpstreamFetch): Promise<void> {
    this.counters.upstreamFetches += 1;
    const part = progress.partPath;
    const hash = createHash("sha256");
    let file: FileHandle | undefined;
    let size = 0;
    try {
      file = await open(part, "wx", 0o600);
      progress.advance({ partCreated: true });
      for await (const message of this.options.upstream.downloadBundle({ sha256, downloadToken })) {
        if (message.msg.case === "info") {
          progress.advance({ ...(message.msg.value.extension ? { info: message.msg.value.extension } : {}) });
        } else if (message.msg.case === "chunk") {
          if (progress.info === undefined) throw new ConnectError("upstream sent bytes before the bundle info", Code.Internal);
          hash.update(message.msg.value);
          size += message.msg.value.byteLength;
          await file.write(message.msg.value);
          progress.advance({ bytes: message.msg.value.byteLength });
        }
      }
      await file.close();
      const actual = hash.digest("hex");
      if (progress.info === undefined || actual !== sha256) {
        throw new ConnectError(`upstream sent bytes with sha256 ${actual} for bundle ${sha256}`, Code.DataLoss);
      }
      await writeFile(join(this.options.dir, sha256 + infoSuffix), toBinary(ExtensionVersionSchema, progress.info));
      await rename(part, this.tarPath(sha256));
    } catch (error) {
      await file?.close().catch(() => undefined);
      await unlink(part).catch(() => undefined);
      progress.fail(upstreamError(error));
      return;
    }
    this.entries.set(sha256, { size, info: progress.info });
    this.totalBytes += size;
    this.options.logger.info({ sha256, bytes: size }, "bundle fetched from upstream into the cache");
    // Evict before the followers finish their streams, so that a client that
    // has its bundle also finds the cache back within its budget.
    await this.evict(sha256);
    progress.succeed();
  }

  /** Evicts least recently used bundles until the cache fits, never `keep` (the one just fetched). */
  private async evict(keep: string | undefined): Promise<void> {
    for (const [sha256] of this.entries) {
      if (this.totalBytes <= this.options.maxBytes) return;
      if (sha256 === keep) continue;
      this.forget(sha256);
      this.counters.evictions += 1;
      // A reader that already opened the file keeps reading it after the unlink.
      await this.removeFiles(sha256);
    }
  }

  private forget(sha256: string): void {
    const entry = this.entries.get(sha256);
    if (entry === undefined) return;
    this.entries.delete(sha256);
    this.totalBytes -= entry.size;
  }

  private async removeFiles(sha256: string): Promise<void> {
    await unlink(this.tarPath(sha256)).catch(() => undefined);
    await unlink(join(this.options.dir, sha256 + infoSuffix)).catch(() => undefined);
  }

  private tarPath(sha256: string): string {
    return join(this.options.dir, sha256 + tarSuffix);
  }
}

function upstreamError(error: unknown): ConnectError {
  const e = ConnectError.from(error);
  return new ConnectError(`upstream extension store: ${e.rawMessage}`, e.code);
}
