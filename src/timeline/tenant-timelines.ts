import type { BlobStore } from "../blob/index.js";
import { storeCall } from "./timeline-error.js";
import { timelinesPrefix } from "./timeline-keys.js";
import { readTimelineMeta, type TimelineMeta } from "./timeline-meta.js";

/** A timeline of a tenant and what its own objects take in the store. */
export interface StoredTimeline {
  readonly meta: TimelineMeta;
  readonly objects: number;
  readonly bytes: number;
}

/**
 * The tenant's timelines (those whose timeline.json exists), in timeline id
 * order, with the objects and bytes under each (the tenant's shared file
 * chunks not counted).
 */
export async function listTenantTimelines(store: BlobStore, tenantId: string): Promise<StoredTimeline[]> {
  const prefix = timelinesPrefix(tenantId);
  const sizes = new Map<string, { objects: number; bytes: number; hasMeta: boolean }>();
  const tenant = { tenantId, timelineId: "*" };
  await storeCall(tenant, prefix, "list timelines", async () => {
    for await (const info of store.listAll(prefix)) {
      const rest = info.key.slice(prefix.length);
      const id = rest.slice(0, rest.indexOf("/"));
      const entry = sizes.get(id) ?? { objects: 0, bytes: 0, hasMeta: false };
      entry.objects += 1;
      entry.bytes += info.size;
      if (rest === `${id}/timeline.json`) entry.hasMeta = true;
      sizes.set(id, entry);
    }
  });
  const out: StoredTimeline[] = [];
  for (const [timelineId, entry] of [...sizes].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
    if (!entry.hasMeta) continue;
    const meta = await readTimelineMeta(store, { tenantId, timelineId });
    if (meta) out.push({ meta, objects: entry.objects, bytes: entry.bytes });
  }
  return out;
}
