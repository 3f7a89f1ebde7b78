import { Code } from "@connectrpc/connect";
import type { BlobStore } from "../blob/index.js";
import { resolveBranchPoint, type BranchPoint } from "./branch-point.js";
import { TimelineError } from "./timeline-error.js";
import { timelineMetaKey, type TimelineRef } from "./timeline-keys.js";
import { createTimelineMeta, readTimelineMeta, type TimelineMeta } from "./timeline-meta.js";
import { resolveHistory } from "./wal-history.js";

/**
 * Creates `branch` as a timeline whose history is `ancestorTimelineId`'s (same
 * tenant) up to the branch point: one object, timeline.json, whatever the
 * ancestor's size. ALREADY_EXISTS when the timeline exists; NOT_FOUND when the
 * ancestor does not; OUT_OF_RANGE for a point outside the ancestor's history.
 */
export async function createBranch(
  store: BlobStore,
  branch: TimelineRef,
  ancestorTimelineId: string,
  point: BranchPoint,
  options: { readonly now?: Date; readonly signal?: AbortSignal } = {},
): Promise<TimelineMeta> {
  const alreadyExists = (): TimelineError =>
    new TimelineError(branch, "already exists; choose another timeline id for the branch", Code.AlreadyExists, timelineMetaKey(branch));
  if (await readTimelineMeta(store, branch)) throw alreadyExists();
  if (ancestorTimelineId === branch.timelineId) {
    throw new TimelineError(branch, "cannot be its own ancestor", Code.InvalidArgument);
  }
  const now = options.now ?? new Date();
  const history = await resolveHistory(store, { tenantId: branch.tenantId, timelineId: ancestorTimelineId });
  const lsn = await resolveBranchPoint(store, history, point, now, options.signal);
  const meta: TimelineMeta = {
    tenantId: branch.tenantId,
    timelineId: branch.timelineId,
    pgMajor: history.meta.pgMajor,
    pgTli: history.meta.pgTli,
    walSegmentBytes: history.meta.walSegmentBytes,
    createdAt: now,
    ancestor: { timelineId: ancestorTimelineId, lsn },
  };
  if ((await createTimelineMeta(store, meta)) !== meta) throw alreadyExists();
  return meta;
}
