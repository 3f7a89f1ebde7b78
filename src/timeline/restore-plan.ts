import { Code } from "@connectrpc/connect";
import type { BlobStore } from "../blob/index.js";
import { formatLsn } from "../wal/index.js";
import { readSnapshotManifest, type Snapshot, type SnapshotManifest } from "./snapshot-manifest.js";
import { TimelineError } from "./timeline-error.js";
import type { TimelineRef } from "./timeline-keys.js";
import { resolveHistory, type ResolveHistoryOptions, type TimelineHistory, type WalPiece } from "./wal-history.js";

/** What a start lays down: one snapshot and the WAL from its redo segment to the durable end. */
export interface RestorePlan {
  readonly history: TimelineHistory;
  readonly snapshot: Snapshot;
  readonly manifest: SnapshotManifest;
  /** Start of the segment holding the snapshot's redo LSN: WAL is laid down from here. */
  readonly walFrom: bigint;
  readonly pieces: readonly WalPiece[];
}

/**
 * Picks the newest usable snapshot and the WAL after it. undefined when the
 * timeline has no usable snapshot and no WAL yet (a root timeline whose
 * creator never finished: start it afresh); DATA_LOSS when it has WAL but no
 * snapshot to replay it onto, or the snapshot's WAL is not all there.
 */
export async function planRestore(store: BlobStore, ref: TimelineRef, options: ResolveHistoryOptions = {}): Promise<RestorePlan | undefined> {
  const history = await resolveHistory(store, ref, options);
  const snapshot = history.snapshots.at(-1);
  if (!snapshot) {
    if (history.pieces.length === 0 && !history.meta.ancestor) return undefined;
    throw new TimelineError(ref, `no usable snapshot: the valid WAL (${formatLsn(history.beginLsn)}..${formatLsn(history.durableEnd)}) has no base to replay onto`, Code.DataLoss);
  }
  const manifest = await readSnapshotManifest(store, snapshot);
  const segment = BigInt(history.meta.walSegmentBytes);
  const walFrom = (manifest.redoLsn / segment) * segment;
  if (walFrom < history.beginLsn) {
    throw new TimelineError(ref, `snapshot needs WAL from ${formatLsn(walFrom)}, but the valid WAL begins at ${formatLsn(history.beginLsn)}`, Code.DataLoss, snapshot.key);
  }
  const pieces = history.pieces
    .filter((p) => p.to > walFrom)
    .map((p) => (p.from < walFrom ? { ...p, from: walFrom } : p));
  return { history, snapshot, manifest, walFrom, pieces };
}
