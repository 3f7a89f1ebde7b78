import { Code } from "@connectrpc/connect";
import type { BlobStore } from "../blob/index.js";
import { formatLsn, lastRecordAtOrBelow, lastTransactionEndAtOrBefore } from "../wal/index.js";
import { historyWalSource } from "./history-wal-source.js";
import { readSnapshotManifest } from "./snapshot-manifest.js";
import { TimelineError } from "./timeline-error.js";
import type { TimelineHistory } from "./wal-history.js";

/** Where in a timeline's history a branch, a point-in-time start or a static compute begins. */
export type BranchPoint =
  | { readonly lsn: bigint }
  | { readonly time: Date }
  /** The durable end. */
  | { readonly latest: true };

/**
 * The record boundary a branch point names in `history`: an LSN normalised
 * down to the end of the last complete record at or before it; a time to the
 * end of the last commit at or before it (read from the newest snapshot made
 * by then). OUT_OF_RANGE when the point lies before the oldest snapshot (no
 * base to start from) or after the durable end (in the future, or not yet
 * shipped). Reads only the WAL it needs: for an LSN, its segment.
 */
export async function resolveBranchPoint(
  store: BlobStore,
  history: TimelineHistory,
  point: BranchPoint,
  now: Date = new Date(),
  signal?: AbortSignal,
): Promise<bigint> {
  const ref = history.meta;
  const oldest = history.snapshots[0];
  if (!oldest) {
    throw new TimelineError(ref, "has no snapshot to start from yet; start a primary on it (or wait for its first clean stop) first", Code.FailedPrecondition);
  }
  const source = historyWalSource(store, history, signal);
  if ("time" in point) {
    if (point.time.getTime() > now.getTime()) {
      throw new TimelineError(ref, `time ${point.time.toISOString()} is in the future (now ${now.toISOString()})`, Code.OutOfRange);
    }
    for (const snapshot of [...history.snapshots].reverse()) {
      const manifest = await readSnapshotManifest(store, snapshot);
      if (new Date(manifest.createdAt).getTime() > point.time.getTime()) continue;
      const found = await lastTransactionEndAtOrBefore({ source, startLsn: snapshot.lsn, endLsn: history.durableEnd, time: point.time });
      return found?.record.endLsn ?? snapshot.lsn;
    }
    const first = await readSnapshotManifest(store, oldest);
    throw new TimelineError(ref, `time ${point.time.toISOString()} is before its oldest snapshot (made ${first.createdAt}): no point-in-time start can go back that far`, Code.OutOfRange, oldest.key);
  }
  const lsn = "lsn" in point ? point.lsn : history.durableEnd;
  if (lsn < oldest.lsn) {
    throw new TimelineError(ref, `lsn ${formatLsn(lsn)} is before ${formatLsn(oldest.lsn)}, the oldest point a start can use (its oldest snapshot)`, Code.OutOfRange, oldest.key);
  }
  if (lsn > history.durableEnd) {
    throw new TimelineError(ref, `lsn ${formatLsn(lsn)} is after the end of its durable WAL, ${formatLsn(history.durableEnd)} (in the future, or not yet shipped)`, Code.OutOfRange);
  }
  const segment = BigInt(history.meta.walSegmentBytes);
  for (let from = (lsn / segment) * segment; ; from -= segment) {
    const startLsn = from > oldest.lsn ? from : oldest.lsn;
    const record = await lastRecordAtOrBelow({ source, startLsn, atOrBelow: lsn });
    if (record) return record.endLsn;
    if (startLsn === oldest.lsn) return oldest.lsn;
  }
}
