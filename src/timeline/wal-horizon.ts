import { Code } from "@connectrpc/connect";
import type { BlobStore } from "../blob/index.js";
import { formatLsn, parseLsn } from "../wal/index.js";
import { getJson, putJson } from "./json-object.js";
import { TimelineError } from "./timeline-error.js";
import { walHorizonKey, type TimelineRef } from "./timeline-keys.js";

/**
 * Records that the timeline's WAL begins at `lsn` (a segment start): written
 * by garbage collection before it deletes the chunks below, so history
 * resolution starts there instead of finding a gap.
 */
export async function writeWalHorizon(store: BlobStore, ref: TimelineRef, lsn: bigint): Promise<void> {
  await putJson(store, ref, walHorizonKey(ref), { begin_lsn: formatLsn(lsn) });
}

/** Where garbage collection left the timeline's WAL beginning; undefined when it never deleted any. */
export async function readWalHorizon(store: BlobStore, ref: TimelineRef): Promise<bigint | undefined> {
  const key = walHorizonKey(ref);
  const value = (await getJson(store, ref, key)) as { begin_lsn?: unknown } | undefined;
  if (value === undefined) return undefined;
  try {
    return parseLsn(String(value.begin_lsn));
  } catch {
    throw new TimelineError(ref, "wal-horizon.json has no valid begin_lsn", Code.DataLoss, key);
  }
}
