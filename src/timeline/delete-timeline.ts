import { Code } from "@connectrpc/connect";
import type { BlobStore, DeletedCounts } from "../blob/index.js";
import { listTenantTimelines } from "./tenant-timelines.js";
import { storeCall, TimelineError } from "./timeline-error.js";
import { generationsPrefix, snapshotsPrefix, timelineMetaKey, timelinePrefix, walPrefix, type TimelineRef } from "./timeline-keys.js";

/**
 * Deletes a timeline: its WAL, snapshot manifests and generations, then
 * timeline.json last, so a reader never sees a timeline.json without its
 * history. Its file chunks stay until the tenant's next garbage collection
 * (other snapshots may share them). FAILED_PRECONDITION naming the branches
 * that begin in it; NOT_FOUND when it does not exist.
 */
export async function deleteTimeline(store: BlobStore, ref: TimelineRef): Promise<DeletedCounts> {
  const timelines = await listTenantTimelines(store, ref.tenantId);
  if (!timelines.some((t) => t.meta.timelineId === ref.timelineId)) {
    throw new TimelineError(ref, "does not exist", Code.NotFound, timelineMetaKey(ref));
  }
  const children = timelines.filter((t) => t.meta.ancestor?.timelineId === ref.timelineId).map((t) => t.meta.timelineId);
  if (children.length > 0) {
    throw new TimelineError(ref, `branches ${children.join(", ")} begin in it and need its WAL and snapshots; delete them first`, Code.FailedPrecondition);
  }
  let objects = 0;
  let bytes = 0;
  for (const prefix of [walPrefix(ref), snapshotsPrefix(ref), generationsPrefix(ref), timelinePrefix(ref)]) {
    const deleted = await storeCall(ref, prefix, "delete", () => store.deletePrefix(prefix));
    objects += deleted.objects;
    bytes += deleted.bytes;
  }
  return { objects, bytes };
}
