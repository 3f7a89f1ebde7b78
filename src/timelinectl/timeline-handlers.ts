import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { requireClaims, requireScope } from "../auth/index.js";
import { DeletedCountsSchema } from "../../gen/pgmesh/common/v1/common_pb.js";
import {
  CollectGarbageResponseSchema, TimelineInfoSchema, TimelineService,
  type CollectGarbageResponse, type CreateTimelineRequest, type TimelineInfo,
} from "../../gen/pgmesh/timeline/v1/timeline_pb.js";
import type { DeletedCounts } from "../blob/index.js";
import type { BranchPoint, GarbageReport } from "../timeline/index.js";
import { formatLsn, parseLsn } from "../wal/index.js";
import type { TimelineCtl, TimelineSummary } from "./timeline-ctl.js";

/** Adapts TimelineCtl to the generated TimelineService; every call needs a control_plane token. */
export function createTimelineHandlers(ctl: TimelineCtl): ServiceImpl<typeof TimelineService> {
  const controlPlane = (ctx: HandlerContext): void => requireScope(requireClaims(ctx), "control_plane");
  return {
    async listTimelines(request, ctx) {
      controlPlane(ctx);
      return { timelines: (await ctl.list(request.tenantId)).map(toTimelineInfo) };
    },

    async createTimeline(request, ctx) {
      controlPlane(ctx);
      const branch = { tenantId: request.tenantId, timelineId: request.newTimelineId };
      const summary = await ctl.branch(branch, request.ancestorTimelineId, branchPointOf(request), ctx.signal);
      return { timeline: toTimelineInfo(summary) };
    },

    async deleteTimeline(request, ctx) {
      controlPlane(ctx);
      return { deleted: toDeletedCounts(await ctl.delete({ tenantId: request.tenantId, timelineId: request.timelineId })) };
    },

    async collectGarbage(request, ctx) {
      controlPlane(ctx);
      const report = await ctl.collectGarbage(request.tenantId, {
        dryRun: request.dryRun,
        ...(request.pitrRetentionSeconds > 0n ? { pitrRetentionMs: Number(request.pitrRetentionSeconds) * 1000 } : {}),
      });
      return toCollectGarbageResponse(report);
    },
  };
}

/** The branch point a request names; INVALID_ARGUMENT for an LSN that is not "X/Y". */
export function branchPointOf(request: Pick<CreateTimelineRequest, "point">): BranchPoint {
  switch (request.point.case) {
    case "lsn":
      try {
        return { lsn: parseLsn(request.point.value) };
      } catch (err) {
        throw new ConnectError(`lsn: ${(err as Error).message}`, Code.InvalidArgument);
      }
    case "time":
      return { time: timestampDate(request.point.value) };
    default:
      return { latest: true };
  }
}

/** The proto form of a summary (also what the CLI prints, as proto JSON). */
export function toTimelineInfo(summary: TimelineSummary): TimelineInfo {
  const { meta } = summary;
  return create(TimelineInfoSchema, {
    tenantId: meta.tenantId,
    timelineId: meta.timelineId,
    ...(meta.ancestor ? { ancestor: { timelineId: meta.ancestor.timelineId, lsn: formatLsn(meta.ancestor.lsn) } } : {}),
    createdTime: timestampFromDate(meta.createdAt),
    pgMajor: meta.pgMajor,
    startLsn: summary.startLsn === undefined ? "" : formatLsn(summary.startLsn),
    durableEndLsn: formatLsn(summary.durableEnd),
    generation: BigInt(summary.generation),
    storedObjects: BigInt(summary.storedObjects),
    storedBytes: BigInt(summary.storedBytes),
    snapshotCount: summary.snapshotCount,
  });
}

/** The proto form of a garbage report. */
export function toCollectGarbageResponse(report: GarbageReport): CollectGarbageResponse {
  return create(CollectGarbageResponseSchema, {
    walChunks: toDeletedCounts(report.walChunks),
    snapshots: toDeletedCounts(report.snapshots),
    deadWalChunks: toDeletedCounts(report.deadWalChunks),
    fileChunks: toDeletedCounts(report.fileChunks),
  });
}

export function toDeletedCounts(counts: DeletedCounts) {
  return create(DeletedCountsSchema, { objects: BigInt(counts.objects), bytes: BigInt(counts.bytes) });
}
