import { createHash } from "node:crypto";
import { Code } from "@connectrpc/connect";
import type { BlobStore } from "../blob/index.js";
import { formatLsn } from "../wal/index.js";
import { bodyOf } from "./json-object.js";
import { storeCall, TimelineError } from "./timeline-error.js";
import { parseWalChunkKey, walChunkKey, walPrefix, type TimelineRef, type WalChunkName } from "./timeline-keys.js";

/** A WAL chunk in the store: its name and key. */
export interface WalChunk extends WalChunkName {
  readonly timeline: TimelineRef;
  readonly key: string;
}

function sha256Prefix(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex").slice(0, 16);
}

/**
 * Puts WAL bytes [startLsn, startLsn + bytes.length) written by `generation`
 * as one chunk (they must lie within one segment). The key carries the range
 * and a checksum, so a reader can verify it without any other object.
 */
export async function putWalChunk(
  store: BlobStore,
  timeline: TimelineRef,
  chunk: { readonly startLsn: bigint; readonly generation: number; readonly bytes: Uint8Array; readonly segmentBytes: number },
  signal?: AbortSignal,
): Promise<WalChunk> {
  const endLsn = chunk.startLsn + BigInt(chunk.bytes.length);
  const segment = BigInt(chunk.segmentBytes);
  if (chunk.bytes.length === 0 || chunk.startLsn / segment !== (endLsn - 1n) / segment) {
    throw new RangeError(`WAL chunk ${formatLsn(chunk.startLsn)}..${formatLsn(endLsn)} is empty or crosses a segment boundary`);
  }
  const name: WalChunkName = { startLsn: chunk.startLsn, endLsn, generation: chunk.generation, sha256Prefix: sha256Prefix(chunk.bytes) };
  const key = walChunkKey(timeline, name);
  await storeCall(timeline, key, "ship WAL", () =>
    store.put(key, bodyOf(chunk.bytes), { expectedBytes: chunk.bytes.length, ...(signal ? { signal } : {}) }),
  );
  return { ...name, timeline, key };
}

/** Every WAL chunk of the timeline (not its ancestors'), in start-LSN order. */
export async function listWalChunks(store: BlobStore, timeline: TimelineRef): Promise<WalChunk[]> {
  const prefix = walPrefix(timeline);
  const chunks: WalChunk[] = [];
  await storeCall(timeline, prefix, "list WAL", async () => {
    for await (const info of store.listAll(prefix)) {
      const name = parseWalChunkKey(info.key);
      if (name && name.endLsn > name.startLsn) chunks.push({ ...name, timeline, key: info.key });
    }
  });
  return chunks;
}

/**
 * The chunk's bytes, checked against the length and checksum its key names:
 * DATA_LOSS naming the key when they differ (truncated or corrupt), NOT_FOUND
 * when it is gone.
 */
export async function readWalChunk(store: BlobStore, chunk: WalChunk, signal?: AbortSignal): Promise<Buffer> {
  const bytes = await storeCall(chunk.timeline, chunk.key, "read WAL", async () => {
    const object = await store.get(chunk.key, signal ? { signal } : {});
    const parts: Buffer[] = [];
    for await (const part of object.body) parts.push(Buffer.from(part));
    return Buffer.concat(parts);
  });
  const expected = Number(chunk.endLsn - chunk.startLsn);
  if (bytes.length !== expected) {
    throw new TimelineError(chunk.timeline, `WAL chunk is ${bytes.length} bytes, its name says ${expected} (truncated?)`, Code.DataLoss, chunk.key);
  }
  if (sha256Prefix(bytes) !== chunk.sha256Prefix) {
    throw new TimelineError(chunk.timeline, "WAL chunk does not match its checksum (corrupt)", Code.DataLoss, chunk.key);
  }
  return bytes;
}
