import { createHash } from "node:crypto";
import { chmod, lstat, mkdir, open, rm } from "node:fs/promises";
import path from "node:path";
import { Code } from "@connectrpc/connect";
import type { BlobStore } from "../blob/index.js";
import { forEachConcurrently } from "./for-each-concurrently.js";
import { bodyOf } from "./json-object.js";
import { listPgdataFiles, type PgdataFile } from "./pgdata-files.js";
import type { SnapshotFileEntry, SnapshotManifest } from "./snapshot-manifest.js";
import { storeCall, TimelineError } from "./timeline-error.js";
import { fileChunkKey, type TimelineRef } from "./timeline-keys.js";

/** Files are split into chunks of this many bytes; an unchanged chunk is stored once per tenant. */
export const defaultChunkBytes = 4 * 1024 * 1024;

/** What PGDATA held when it was last uploaded or laid down: path -> size, mtime and chunks. */
export type FileChunkCache = Map<string, { readonly size: number; readonly mtimeNs: string; readonly chunks: readonly string[] }>;

export interface TransferOptions {
  readonly concurrency: number;
  readonly signal?: AbortSignal;
  readonly chunkBytes?: number;
  /** The state of PGDATA after the last upload or lay-down: files that match it are not read again. */
  readonly cache?: FileChunkCache;
}

export interface UploadedFiles {
  readonly files: SnapshotFileEntry[];
  readonly emptyDirs: string[];
  readonly cache: FileChunkCache;
  /** Chunk bytes actually put (new content). */
  readonly bytesPut: number;
}

const sha256 = (bytes: Uint8Array): string => createHash("sha256").update(bytes).digest("hex");

/**
 * Puts PGDATA's files as content-addressed chunks (HEAD first: a chunk
 * already stored is not put again), files in parallel, each read in
 * chunk-sized pieces. Files unchanged since the cache (same size and mtime)
 * are not read at all.
 */
export async function uploadPgdataFiles(store: BlobStore, timeline: TimelineRef, pgdata: string, options: TransferOptions): Promise<UploadedFiles> {
  const chunkBytes = options.chunkBytes ?? defaultChunkBytes;
  const { files, emptyDirs } = await listPgdataFiles(pgdata);
  const entries = new Map<string, SnapshotFileEntry>();
  const cache: FileChunkCache = new Map();
  let bytesPut = 0;
  const putChunk = async (bytes: Buffer, signal: AbortSignal): Promise<string> => {
    const hash = sha256(bytes);
    const key = fileChunkKey(timeline.tenantId, hash);
    const stored = await storeCall(timeline, key, "check a file chunk", () => store.head(key));
    if (!stored) {
      await storeCall(timeline, key, "store a file chunk", () => store.put(key, bodyOf(bytes), { expectedBytes: bytes.length, signal }));
      bytesPut += bytes.length;
    }
    return hash;
  };
  const uploadFile = async (file: PgdataFile, signal: AbortSignal): Promise<void> => {
    const known = options.cache?.get(file.path);
    if (known && known.size === file.size && known.mtimeNs === file.mtimeNs) {
      entries.set(file.path, { path: file.path, size: file.size, mode: file.mode, chunks: known.chunks });
      cache.set(file.path, known);
      return;
    }
    const chunks: string[] = [];
    let size = 0;
    const handle = await open(path.join(pgdata, file.path), "r").catch((err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT") return undefined; // dropped while an online snapshot runs
      throw err;
    });
    if (!handle) return;
    try {
      for (;;) {
        const buffer = Buffer.alloc(chunkBytes);
        let filled = 0;
        while (filled < chunkBytes) {
          const { bytesRead } = await handle.read(buffer, filled, chunkBytes - filled, size + filled);
          if (bytesRead === 0) break;
          filled += bytesRead;
        }
        if (filled === 0) break;
        chunks.push(await putChunk(buffer.subarray(0, filled), signal));
        size += filled;
        if (filled < chunkBytes) break;
      }
    } finally {
      await handle.close();
    }
    entries.set(file.path, { path: file.path, size, mode: file.mode, chunks });
    cache.set(file.path, { size, mtimeNs: file.mtimeNs, chunks });
  };
  // Largest first: long files start at once and small ones fill the gaps.
  await forEachConcurrently([...files].sort((a, b) => b.size - a.size), options.concurrency, uploadFile, options.signal);
  return { files: files.flatMap((f) => entries.get(f.path) ?? []), emptyDirs, cache, bytesPut };
}

/**
 * Makes PGDATA hold exactly the manifest's files: a file whose local copy
 * still matches the cache (same chunks, size and mtime) stays, the others'
 * chunks are fetched in parallel, a big file's too (each checked against its
 * sha256 and written at its offset), files the
 * manifest lacks are removed (pg_wal is left to the caller). Returns the
 * cache of what PGDATA now holds.
 */
export async function layDownPgdataFiles(
  store: BlobStore,
  timeline: TimelineRef,
  manifest: SnapshotManifest,
  pgdata: string,
  options: TransferOptions,
): Promise<FileChunkCache> {
  await mkdir(pgdata, { recursive: true, mode: 0o700 });
  await chmod(pgdata, 0o700);
  const wanted = new Map(manifest.files.map((f) => [f.path, f]));
  const local = await listPgdataFiles(pgdata);
  for (const file of local.files) {
    if (!wanted.has(file.path)) await rm(path.join(pgdata, file.path), { force: true });
  }
  const localByPath = new Map(local.files.map((f) => [f.path, f]));
  const cache: FileChunkCache = new Map();
  const unchanged = (entry: SnapshotFileEntry): boolean => {
    const have = localByPath.get(entry.path);
    const known = options.cache?.get(entry.path);
    return have !== undefined && known !== undefined && have.size === entry.size && known.size === entry.size &&
      known.mtimeNs === have.mtimeNs && known.chunks.length === entry.chunks.length && known.chunks.every((c, i) => c === entry.chunks[i]);
  };
  const todo: SnapshotFileEntry[] = [];
  for (const entry of manifest.files) {
    if (unchanged(entry)) cache.set(entry.path, options.cache!.get(entry.path)!);
    else todo.push(entry);
  }
  // Every file at its full size first; then its chunks arrive in parallel, big files' too, each written at its offset.
  for (const entry of todo) {
    if (entry.chunks.length !== Math.ceil(entry.size / manifest.chunkBytes)) {
      throw new TimelineError(timeline, `${entry.path} has ${entry.chunks.length} chunks in the manifest for ${entry.size} bytes`, Code.DataLoss);
    }
    const target = path.join(pgdata, entry.path);
    await mkdir(path.dirname(target), { recursive: true, mode: 0o700 });
    const handle = await open(target, "w", entry.mode & 0o777);
    await handle.truncate(entry.size).finally(() => handle.close());
  }
  const pieces = todo.flatMap((entry) => entry.chunks.map((hash, index) => ({ entry, hash, index })));
  await forEachConcurrently(pieces, options.concurrency, async ({ entry, hash, index }, signal) => {
    const key = fileChunkKey(timeline.tenantId, hash);
    const bytes = await storeCall(timeline, key, "read a file chunk", async () => {
      const parts: Buffer[] = [];
      for await (const part of (await store.get(key, { signal })).body) parts.push(Buffer.from(part));
      return Buffer.concat(parts);
    });
    if (sha256(bytes) !== hash) {
      throw new TimelineError(timeline, `file chunk of ${entry.path} does not match its sha256 (corrupt)`, Code.DataLoss, key);
    }
    const position = index * manifest.chunkBytes;
    const expected = Math.min(manifest.chunkBytes, entry.size - position);
    if (bytes.length !== expected) {
      throw new TimelineError(timeline, `file chunk ${index} of ${entry.path} is ${bytes.length} bytes, the manifest needs ${expected}`, Code.DataLoss, key);
    }
    const handle = await open(path.join(pgdata, entry.path), "r+");
    try {
      await handle.write(bytes, 0, bytes.length, position);
    } finally {
      await handle.close();
    }
  }, options.signal);
  for (const entry of todo) {
    const target = path.join(pgdata, entry.path);
    await chmod(target, entry.mode & 0o7777);
    const stats = await lstat(target, { bigint: true });
    cache.set(entry.path, { size: entry.size, mtimeNs: stats.mtimeNs.toString(), chunks: entry.chunks });
  }
  for (const dir of manifest.emptyDirs) await mkdir(path.join(pgdata, dir), { recursive: true, mode: 0o700 });
  return cache;
}
