import { Code, ConnectError } from "@connectrpc/connect";
import { openBlobStore, type BlobStoreOptions } from "../blob/index.js";
import { createBranch, readTimelineMeta, type TimelineRef } from "../timeline/index.js";
import type { TimelineAncestorSpec } from "./compute-spec.js";

/**
 * Creates the spec's timeline as a branch of its ancestor unless it exists
 * (the spec's ancestor only matters at the timeline's first start). Another
 * compute creating it at the same moment is fine: one of them wins.
 */
export async function ensureTimelineBranch(
  storage: string,
  ref: TimelineRef,
  ancestor: TimelineAncestorSpec,
  blobStoreOptions: BlobStoreOptions,
  signal: AbortSignal,
): Promise<void> {
  const store = await openBlobStore(storage, blobStoreOptions);
  try {
    if (await readTimelineMeta(store, ref)) return;
    await createBranch(store, ref, ancestor.timelineId, ancestor.point, { signal }).catch((err: unknown) => {
      if (!(err instanceof ConnectError && err.code === Code.AlreadyExists)) throw err;
    });
  } finally {
    await store.close();
  }
}
