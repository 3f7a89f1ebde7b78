export {
  claimNextGeneration, listGenerations, successorOf, writeGenerationStart,
  type GenerationClaim, type Generations,
} from "./generations.js";
export { DB_IN_PRODUCTION, DB_SHUTDOWNED, markCrashed, readControlFile, type ControlFile } from "./pg-control.js";
export { listPgdataFiles, type PgdataFile } from "./pgdata-files.js";
export { planRestore, type RestorePlan } from "./restore-plan.js";
export {
  listSnapshots, readSnapshotManifest, writeSnapshotManifest,
  type Snapshot, type SnapshotFileEntry, type SnapshotManifest,
} from "./snapshot-manifest.js";
export {
  defaultChunkBytes, layDownPgdataFiles, uploadPgdataFiles,
  type FileChunkCache, type TransferOptions, type UploadedFiles,
} from "./snapshot-transfer.js";
export { storeCall, TimelineError } from "./timeline-error.js";
export {
  describeTimeline, fileChunkKey, generationKey, generationStartKey, lsnHex, parseGenerationKey, parseSnapshotKey,
  parseWalChunkKey, snapshotKey, snapshotsPrefix, timelineIdPattern, timelineMetaKey, timelinePrefix, timelinesPrefix,
  walChunkKey, walPrefix, type SnapshotName, type TimelineRef, type WalChunkName,
} from "./timeline-keys.js";
export {
  createTimelineMeta, readTimelineMeta, requireTimelineMeta, timelineMetaToJson,
  type TimelineAncestor, type TimelineMeta,
} from "./timeline-meta.js";
export {
  bootstrapTimeline, restoreTimeline, shutdownCheckpointOf, takeOnlineSnapshot, takeShutdownSnapshot, walSegmentBytesOf,
  type BackupSession,
} from "./timeline-snapshots.js";
export { listWalChunks, putWalChunk, readWalChunk, type WalChunk } from "./wal-chunks.js";
export { resolveHistory, type ResolveHistoryOptions, type TimelineHistory, type WalPiece } from "./wal-history.js";
export { endOfLastRecord, layDownWal, truncateWalAfter, writeWalPiece, type WalLayout } from "./wal-laydown.js";
export { WalShipper, type WalShipperOptions } from "./wal-shipper.js";
export { resolveBranchPoint, type BranchPoint } from "./branch-point.js";
export { collectGarbage, type CollectGarbageOptions, type GarbageReport } from "./collect-garbage.js";
export { createBranch } from "./create-branch.js";
export { deleteTimeline } from "./delete-timeline.js";
export { historyWalSource } from "./history-wal-source.js";
export { listTenantTimelines, type StoredTimeline } from "./tenant-timelines.js";
