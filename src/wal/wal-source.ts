import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { DEFAULT_WAL_SEGMENT_BYTES, SIZE_OF_XLOG_LONG_PHD, formatLsn } from "./wal-constants.js";
import { WalFormatError } from "./wal-errors.js";

/** The bytes a source holds of one segment: `bytes` start `offset` bytes into the segment. */
export interface WalSegmentBytes {
  readonly offset: number;
  readonly bytes: Uint8Array;
}

/**
 * Where WAL bytes come from: segment files in a directory, or pieces of WAL
 * held in memory (e.g. chunks fetched from a store). A source may hold only
 * part of a segment; the reader treats what it lacks as the end of valid WAL.
 */
export interface WalSource {
  readonly segmentBytes: number;
  /** The lowest LSN the source holds. */
  readonly firstLsn: bigint;
  segment(segno: bigint): Promise<WalSegmentBytes | undefined>;
  /** Names the segment's absence for an error message. */
  missing(segno: bigint): string;
}

/** One piece of WAL: the bytes at [startLsn, startLsn + bytes.length). */
export interface WalBytes {
  readonly startLsn: bigint;
  readonly bytes: Uint8Array;
}

const SEGMENT_NAME = /^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$/;

function hex8(n: bigint | number): string {
  return n.toString(16).toUpperCase().padStart(8, "0");
}

/** The file name of a segment (timeline, segment number, segment size), as pg_wal names it. */
export function walSegmentFileName(timeline: number, segno: bigint, segmentBytes: number): string {
  const perId = 0x100000000n / BigInt(segmentBytes);
  return hex8(timeline) + hex8(segno / perId) + hex8(segno % perId);
}

function checkSegmentBytes(segmentBytes: number, where: string): void {
  if (segmentBytes < 1024 * 1024 || (segmentBytes & (segmentBytes - 1)) !== 0) {
    throw new WalFormatError(undefined, `${where} announces segment size ${segmentBytes}; expected a power of two of at least 1 MiB`);
  }
}

/**
 * The segment files of one timeline in a pg_wal directory (default: the
 * highest timeline with a segment there); undefined when it has none.
 */
export async function openWalDir(walDir: string, timeline?: number): Promise<WalSource | undefined> {
  const names = (await readdir(walDir)).filter((n) => SEGMENT_NAME.test(n)).sort();
  const tli = timeline ?? Math.max(0, ...names.map((n) => parseInt(n.slice(0, 8), 16)));
  const mine = names.filter((n) => parseInt(n.slice(0, 8), 16) === tli);
  if (mine.length === 0) return undefined;
  const first = await readFile(path.join(walDir, mine[0]!));
  const segmentBytes = first.length >= SIZE_OF_XLOG_LONG_PHD ? first.readUInt32LE(32) : DEFAULT_WAL_SEGMENT_BYTES;
  checkSegmentBytes(segmentBytes, `segment ${mine[0]}`);
  const perId = 0x100000000n / BigInt(segmentBytes);
  const firstSegno = BigInt(`0x${mine[0]!.slice(8, 16)}`) * perId + BigInt(`0x${mine[0]!.slice(16)}`);
  const fileName = (segno: bigint): string => walSegmentFileName(tli, segno, segmentBytes);
  return {
    segmentBytes,
    firstLsn: firstSegno * BigInt(segmentBytes),
    async segment(segno) {
      try {
        return { offset: 0, bytes: await readFile(path.join(walDir, fileName(segno))) };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
        throw err;
      }
    },
    missing: (segno) => `segment ${fileName(segno)} is not in ${walDir}`,
  };
}

/**
 * WAL held in memory as pieces (in any order; they may leave gaps). Each
 * segment yields the contiguous run of bytes that begins with the lowest piece
 * inside it.
 */
export function walBytesSource(pieces: readonly WalBytes[], segmentBytes = DEFAULT_WAL_SEGMENT_BYTES): WalSource {
  checkSegmentBytes(segmentBytes, "the WAL pieces' source");
  if (pieces.length === 0) throw new WalFormatError(undefined, "no WAL pieces to read");
  const sorted = pieces.filter((p) => p.bytes.length > 0).sort((a, b) => (a.startLsn < b.startLsn ? -1 : a.startLsn > b.startLsn ? 1 : 0));
  const segBytes = BigInt(segmentBytes);
  return {
    segmentBytes,
    firstLsn: sorted[0]?.startLsn ?? pieces[0]!.startLsn,
    async segment(segno) {
      const segStart = segno * segBytes;
      const segEnd = segStart + segBytes;
      const run: Uint8Array[] = [];
      let runStart: bigint | undefined;
      let runEnd = 0n;
      for (const piece of sorted) {
        const start = piece.startLsn > segStart ? piece.startLsn : segStart;
        const pieceEnd = piece.startLsn + BigInt(piece.bytes.length);
        const end = pieceEnd < segEnd ? pieceEnd : segEnd;
        if (start >= end) continue;
        if (runStart === undefined) runStart = start;
        else if (start > runEnd) break;
        else if (end <= runEnd) continue;
        const from = run.length === 0 ? start : runEnd;
        run.push(piece.bytes.subarray(Number(from - piece.startLsn), Number(end - piece.startLsn)));
        runEnd = end;
      }
      if (runStart === undefined) return undefined;
      return { offset: Number(runStart - segStart), bytes: run.length === 1 ? run[0]! : Buffer.concat(run) };
    },
    missing: (segno) => `no WAL piece holds bytes of the segment at ${formatLsn(segno * segBytes)}`,
  };
}
