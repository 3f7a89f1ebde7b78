import type { BlobStore } from "../blob/index.js";
import {
  bootstrapTimeline, claimNextGeneration, createTimelineMeta, walSegmentBytesOf, type TimelineMeta, type TimelineRef,
} from "../timeline/index.js";
import { TimelineExistsError } from "./fast-import-errors.js";

/**
 * Makes the stopped, imported PGDATA the first snapshot of a new timeline:
 * timeline.json, generation 1's claim, its WAL up to the shutdown
 * checkpoint, the snapshot, and last generation 1's start record, so a
 * compute that starts on the timeline restores the imported data and writes
 * on top of it.
 */
export async function importIntoTimeline(
  store: BlobStore,
  timeline: TimelineRef,
  pgdata: string,
  options: { readonly pgMajor: number; readonly concurrency: number; readonly signal?: AbortSignal },
): Promise<void> {
  const segmentBytes = await walSegmentBytesOf(pgdata);
  const meta: TimelineMeta = { ...timeline, pgMajor: options.pgMajor, pgTli: 1, walSegmentBytes: segmentBytes, createdAt: new Date(), ancestor: null };
  if ((await createTimelineMeta(store, meta)) !== meta) throw new TimelineExistsError(timeline);
  const { generation } = await claimNextGeneration(store, timeline, "fast-import");
  await bootstrapTimeline(store, timeline, generation, pgdata, {
    concurrency: options.concurrency, pgMajor: options.pgMajor, pgTli: 1, segmentBytes, ...(options.signal ? { signal: options.signal } : {}),
  });
}
