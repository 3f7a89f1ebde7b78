import { mkdir, open, readdir, rm } from "node:fs/promises";
import path from "node:path";
import type { BlobStore } from "../blob/index.js";
import { lastRecordAtOrBelow, walSegmentFileName, WalFormatError } from "../wal/index.js";
import { forEachConcurrently } from "./for-each-concurrently.js";
import { readWalChunk } from "./wal-chunks.js";
import type { WalPiece } from "./wal-history.js";

export interface WalLayout {
  readonly walDir: string;
  readonly pgTli: number;
  readonly segmentBytes: number;
  /** Who new segment files belong to (the Postgres user), when not the caller. */
  readonly owner?: { readonly uid: number; readonly gid: number };
}

/**
 * Writes the pieces into pg_wal as whole segment files (zero beyond the
 * pieces), fetching and verifying chunks in parallel. pg_wal is emptied first.
 */
export async function layDownWal(
  store: BlobStore,
  pieces: readonly WalPiece[],
  layout: WalLayout,
  options: { readonly concurrency: number; readonly signal?: AbortSignal },
): Promise<void> {
  await rm(layout.walDir, { recursive: true, force: true });
  await mkdir(path.join(layout.walDir, "archive_status"), { recursive: true, mode: 0o700 });
  const segment = BigInt(layout.segmentBytes);
  const segnos = [...new Set(pieces.map((p) => p.from / segment))];
  for (const segno of segnos) {
    const handle = await open(segmentPath(layout, segno), "w", 0o600);
    await handle.truncate(layout.segmentBytes);
    await handle.close();
  }
  await forEachConcurrently(pieces, options.concurrency, (piece, signal) => writeWalPiece(store, piece, layout, signal), options.signal);
}

/**
 * Fetches one piece's chunk (verified) and writes its bytes into their
 * segment file, creating the file zero-filled (owned by layout.owner) when
 * it is not there yet; other bytes of an existing file are left as they are.
 */
export async function writeWalPiece(store: BlobStore, piece: WalPiece, layout: WalLayout, signal?: AbortSignal): Promise<void> {
  const bytes = await readWalChunk(store, piece.chunk, signal);
  const segment = BigInt(layout.segmentBytes);
  const file = segmentPath(layout, piece.from / segment);
  const handle = await open(file, "r+").catch(async (err: NodeJS.ErrnoException) => {
    if (err.code !== "ENOENT") throw err;
    const created = await open(file, "w+", 0o600);
    await created.truncate(layout.segmentBytes);
    if (layout.owner) await created.chown(layout.owner.uid, layout.owner.gid);
    return created;
  });
  try {
    const slice = bytes.subarray(Number(piece.from - piece.chunk.startLsn), Number(piece.to - piece.chunk.startLsn));
    await handle.write(slice, 0, slice.length, Number(piece.from % segment));
  } finally {
    await handle.close();
  }
}

/**
 * The end of the last complete record at or before `durableEnd`, reading from
 * `fromLsn` (a record boundary the WAL in walDir covers, e.g. the snapshot's
 * checkpoint). Looks at the last segment first; only when no record ends
 * there does it read from `fromLsn`.
 */
export async function endOfLastRecord(layout: WalLayout, fromLsn: bigint, durableEnd: bigint): Promise<bigint> {
  const segment = BigInt(layout.segmentBytes);
  const lastSegmentStart = ((durableEnd - 1n) / segment) * segment;
  if (lastSegmentStart > fromLsn) {
    const end = await scanRecordEnds(layout, lastSegmentStart, durableEnd);
    if (end !== undefined) return end;
  }
  const end = await scanRecordEnds(layout, fromLsn, durableEnd);
  if (end === undefined) throw new WalFormatError(fromLsn, `no complete WAL record between here and the durable end`);
  return end;
}

async function scanRecordEnds(layout: WalLayout, startLsn: bigint, durableEnd: bigint): Promise<bigint | undefined> {
  const record = await lastRecordAtOrBelow({ walDir: layout.walDir, timeline: layout.pgTli, startLsn, atOrBelow: durableEnd });
  return record?.endLsn;
}

/** Zeroes the WAL after `endLsn` and removes later segments, so recovery ends exactly there. */
export async function truncateWalAfter(layout: WalLayout, endLsn: bigint): Promise<void> {
  const segment = BigInt(layout.segmentBytes);
  const segno = endLsn / segment;
  const offset = Number(endLsn % segment);
  const keep = walSegmentFileName(layout.pgTli, segno, layout.segmentBytes);
  for (const name of await readdir(layout.walDir)) {
    const after = offset === 0 ? name >= keep : name > keep;
    if (/^[0-9A-F]{24}$/.test(name) && after) await rm(path.join(layout.walDir, name));
  }
  if (offset === 0) return;
  const handle = await open(segmentPath(layout, segno), "r+");
  try {
    await handle.write(Buffer.alloc(layout.segmentBytes - offset), 0, layout.segmentBytes - offset, offset);
  } finally {
    await handle.close();
  }
}

function segmentPath(layout: WalLayout, segno: bigint): string {
  return path.join(layout.walDir, walSegmentFileName(layout.pgTli, segno, layout.segmentBytes));
}
