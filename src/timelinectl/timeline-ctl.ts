import type { BlobStore, DeletedCounts } from "../blob/index.js";
import {
  collectGarbage, createBranch, deleteTimeline, listTenantTimelines, resolveHistory,
  type BranchPoint, type GarbageReport, type StoredTimeline, type TimelineMeta, type TimelineRef,
} from "../timeline/index.js";
import { checkResourceId } from "../ids/index.js";
import type { CompiledTimelineCtlOptions } from "./timeline-ctl-options.js";

/** A timeline as the control plane sees it. */
export interface TimelineSummary {
  readonly meta: TimelineMeta;
  /** The oldest point a start or branch can use (undefined: no snapshot yet). */
  readonly startLsn: bigint | undefined;
  readonly durableEnd: bigint;
  readonly generation: number;
  readonly snapshotCount: number;
  readonly storedObjects: number;
  readonly storedBytes: number;
}

/** What the control plane does with timelines, over one store; the transport (gRPC or CLI) adapts it. */
export class TimelineCtl {
  constructor(
    private readonly store: BlobStore,
    private readonly options: CompiledTimelineCtlOptions,
  ) {}

  async list(tenantId: string): Promise<TimelineSummary[]> {
    checkResourceId("tenant_id", tenantId);
    const timelines = await listTenantTimelines(this.store, tenantId);
    return Promise.all(timelines.map((t) => this.summarise(t)));
  }

  async branch(branch: TimelineRef, ancestorTimelineId: string, point: BranchPoint, signal?: AbortSignal): Promise<TimelineSummary> {
    checkRef(branch, "new_timeline_id");
    checkResourceId("ancestor_timeline_id", ancestorTimelineId);
    const meta = await createBranch(this.store, branch, ancestorTimelineId, point, signal ? { signal } : {});
    return this.summarise({ meta, objects: 1, bytes: 0 });
  }

  async delete(ref: TimelineRef): Promise<DeletedCounts> {
    checkRef(ref, "timeline_id");
    return deleteTimeline(this.store, ref);
  }

  async collectGarbage(tenantId: string, request: { readonly pitrRetentionMs?: number; readonly dryRun: boolean }): Promise<GarbageReport> {
    checkResourceId("tenant_id", tenantId);
    return collectGarbage(this.store, tenantId, {
      pitrRetentionMs: request.pitrRetentionMs ?? this.options.pitrRetentionMs,
      fileChunkGraceMs: this.options.fileChunkGraceMs,
      dryRun: request.dryRun,
    });
  }

  private async summarise(stored: StoredTimeline): Promise<TimelineSummary> {
    const history = await resolveHistory(this.store, stored.meta);
    const own = history.snapshots.filter((s) => s.timeline.timelineId === stored.meta.timelineId).length;
    return {
      meta: stored.meta,
      startLsn: history.snapshots[0]?.lsn,
      durableEnd: history.durableEnd,
      generation: history.generations.highest,
      snapshotCount: own,
      storedObjects: stored.objects,
      storedBytes: stored.bytes,
    };
  }
}

function checkRef(ref: TimelineRef, timelineField: string): void {
  checkResourceId("tenant_id", ref.tenantId);
  checkResourceId(timelineField, ref.timelineId);
}
