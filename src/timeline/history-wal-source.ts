import type { BlobStore } from "../blob/index.js";
import { formatLsn, walBytesSource, type WalBytes, type WalSource } from "../wal/index.js";
import { describeTimeline } from "./timeline-keys.js";
import { readWalChunk } from "./wal-chunks.js";
import type { TimelineHistory } from "./wal-history.js";

/**
 * A timeline's valid WAL as a WalSource that fetches (and verifies) only the
 * chunks of the segments a reader asks for, so a scan holds a segment or two
 * in memory, never the whole history.
 */
export function historyWalSource(store: BlobStore, history: TimelineHistory, signal?: AbortSignal): WalSource {
  const segmentBytes = history.meta.walSegmentBytes;
  const segment = BigInt(segmentBytes);
  const firstLsn = history.pieces[0]?.from ?? history.beginLsn;
  return {
    segmentBytes,
    firstLsn,
    async segment(segno) {
      const from = segno * segment;
      const to = from + segment;
      const wanted = history.pieces.filter((p) => p.to > from && p.from < to);
      if (wanted.length === 0) return undefined;
      const held: WalBytes[] = await Promise.all(wanted.map(async (piece) => {
        const bytes = await readWalChunk(store, piece.chunk, signal);
        return { startLsn: piece.from, bytes: bytes.subarray(Number(piece.from - piece.chunk.startLsn), Number(piece.to - piece.chunk.startLsn)) };
      }));
      return walBytesSource(held, segmentBytes).segment(segno);
    },
    missing: (segno) => `timeline ${describeTimeline(history.meta)} has no valid WAL in the segment at ${formatLsn(segno * segment)}`,
  };
}
