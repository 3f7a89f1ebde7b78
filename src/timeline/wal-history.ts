import { Code } from "@connectrpc/connect";
import type { BlobStore } from "../blob/index.js";
import { formatLsn } from "../wal/index.js";
import { listGenerations, type Generations } from "./generations.js";
import { listSnapshots, type Snapshot } from "./snapshot-manifest.js";
import { TimelineError } from "./timeline-error.js";
import type { TimelineRef } from "./timeline-keys.js";
import { requireTimelineMeta, type TimelineMeta } from "./timeline-meta.js";
import { listWalChunks, type WalChunk } from "./wal-chunks.js";
import { readWalHorizon } from "./wal-horizon.js";

/** The bytes [from, to) of a chunk that belong to the valid history. */
export interface WalPiece {
  readonly chunk: WalChunk;
  readonly from: bigint;
  readonly to: bigint;
}

/** A timeline's valid WAL, its ancestors' included, and the snapshots a start may use. */
export interface TimelineHistory {
  readonly meta: TimelineMeta;
  readonly generations: Generations;
  /** The first byte of valid WAL (of the root ancestor for a branch). */
  readonly beginLsn: bigint;
  /** The end of the contiguous valid WAL: everything before it is durable. */
  readonly durableEnd: bigint;
  /** Contiguous, in order, from beginLsn to durableEnd. */
  readonly pieces: readonly WalPiece[];
  /** Snapshots whose WAL is all valid history (an ancestor's up to the branch point), oldest first. */
  readonly snapshots: readonly Snapshot[];
}

export interface ResolveHistoryOptions {
  /** Resolve as of this LSN: nothing after it counts (branch points, static starts). */
  readonly upTo?: bigint;
}

/**
 * The one definition of a timeline's valid WAL: each generation that wrote a
 * start record owns [its start, the lowest start of any later generation);
 * its chunks count within that range only (a fenced primary's late chunks
 * fall outside). A branch's history is its ancestor's up to the branch LSN,
 * then its own. The durable end is where the contiguous bytes stop.
 */
export async function resolveHistory(store: BlobStore, ref: TimelineRef, options: ResolveHistoryOptions = {}): Promise<TimelineHistory> {
  const meta = await requireTimelineMeta(store, ref);
  const [generations, chunks, snapshots, horizon] = await Promise.all([
    listGenerations(store, ref), listWalChunks(store, ref), listSnapshots(store, ref), readWalHorizon(store, ref),
  ]);
  let inherited: Pick<TimelineHistory, "beginLsn" | "durableEnd" | "pieces" | "snapshots"> | undefined;
  // Once garbage collection cut the timeline's own WAL above the branch point, the ancestor's is not needed.
  if (meta.ancestor && !(horizon !== undefined && horizon > meta.ancestor.lsn)) {
    const ancestorRef = { tenantId: ref.tenantId, timelineId: meta.ancestor.timelineId };
    const ancestor = await resolveHistory(store, ancestorRef, { upTo: meta.ancestor.lsn });
    if (ancestor.durableEnd < meta.ancestor.lsn) {
      throw new TimelineError(ref, `the ancestor ${meta.ancestor.timelineId}'s durable WAL ends at ${formatLsn(ancestor.durableEnd)}, before the branch point ${formatLsn(meta.ancestor.lsn)}`, Code.DataLoss);
    }
    inherited = ancestor;
  }

  const ranges = generationRanges(generations);
  const own: WalPiece[] = [];
  for (const chunk of chunks) {
    const range = ranges.get(chunk.generation);
    if (!range || chunk.startLsn < range.from) continue;
    const to = chunk.endLsn < range.to ? chunk.endLsn : range.to;
    if (to > chunk.startLsn) own.push({ chunk, from: chunk.startLsn, to });
  }
  own.sort((a, b) => (a.from < b.from ? -1 : a.from > b.from ? 1 : a.to > b.to ? -1 : 1));

  const pieces: WalPiece[] = [...(inherited?.pieces ?? [])];
  const firstStart = [...generations.starts.values()].reduce<bigint | undefined>((min, s) => (min === undefined || s < min ? s : min), undefined);
  const start = inherited?.beginLsn ?? firstStart ?? 0n;
  const beginLsn = horizon !== undefined && horizon > start ? horizon : start;
  let cursor = inherited?.durableEnd ?? beginLsn;
  for (const piece of own) {
    if (piece.from > cursor) break;
    if (piece.to <= cursor) continue;
    pieces.push({ chunk: piece.chunk, from: cursor, to: piece.to });
    cursor = piece.to;
  }
  const durableEnd = options.upTo !== undefined && options.upTo < cursor ? options.upTo : cursor;
  const clipped = clipPieces(pieces, durableEnd);

  const usable = snapshots.filter((s) => {
    const range = ranges.get(s.generation);
    return range !== undefined && s.lsn >= range.from && s.lsn <= range.to && s.lsn <= durableEnd;
  });
  return {
    meta,
    generations,
    beginLsn,
    durableEnd,
    pieces: clipped,
    snapshots: [...(inherited?.snapshots ?? []), ...usable].filter((s) => s.lsn <= durableEnd),
  };
}

/** Generation -> the LSN range its WAL may cover. */
function generationRanges(generations: Generations): Map<number, { from: bigint; to: bigint }> {
  const started = [...generations.starts.entries()].sort((a, b) => a[0] - b[0]);
  const ranges = new Map<number, { from: bigint; to: bigint }>();
  let laterMin = BigInt(Number.MAX_SAFE_INTEGER) * 1024n * 1024n;
  for (let i = started.length - 1; i >= 0; i--) {
    const [generation, from] = started[i]!;
    ranges.set(generation, { from, to: laterMin });
    if (from < laterMin) laterMin = from;
  }
  return ranges;
}

function clipPieces(pieces: readonly WalPiece[], end: bigint): WalPiece[] {
  const out: WalPiece[] = [];
  for (const piece of pieces) {
    if (piece.from >= end) break;
    out.push(piece.to > end ? { ...piece, to: end } : piece);
  }
  return out;
}
