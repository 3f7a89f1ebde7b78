import type { BlobStore, DeletedCounts } from "../blob/index.js";
import type { Generations } from "./generations.js";
import { listSnapshots, readSnapshotManifest, type Snapshot, type SnapshotManifest } from "./snapshot-manifest.js";
import { listTenantTimelines } from "./tenant-timelines.js";
import { storeCall } from "./timeline-error.js";
import { fileChunkKey, type TimelineRef } from "./timeline-keys.js";
import { listWalChunks } from "./wal-chunks.js";
import { writeWalHorizon } from "./wal-horizon.js";
import { resolveHistory } from "./wal-history.js";

export interface CollectGarbageOptions {
  /** Point-in-time starts within this window before `now` stay possible. */
  readonly pitrRetentionMs: number;
  /** File chunks no manifest names are deleted only once older than this (a snapshot being taken names them last). */
  readonly fileChunkGraceMs: number;
  /** Report, do not delete. */
  readonly dryRun: boolean;
  readonly now?: Date;
}

export interface GarbageReport {
  readonly walChunks: DeletedCounts;
  readonly snapshots: DeletedCounts;
  readonly deadWalChunks: DeletedCounts;
  readonly fileChunks: DeletedCounts;
}

interface Doomed {
  readonly key: string;
  readonly bytes: number;
  readonly kind: keyof GarbageReport;
}

/**
 * Garbage-collects a tenant's timelines. Per timeline, it keeps the newest
 * snapshot made before the retention window opened (every later point can
 * start from it) and everything after; for each branch, the ancestor's
 * newest snapshot at or below the branch point and the WAL from there to it.
 * It deletes older WAL chunks and manifests, WAL a fenced primary wrote past
 * its successor's start (or that a generation which never started wrote),
 * and then file chunks that no remaining manifest names and that are older
 * than the grace period.
 */
export async function collectGarbage(store: BlobStore, tenantId: string, options: CollectGarbageOptions): Promise<GarbageReport> {
  const now = options.now ?? new Date();
  const timelines = (await listTenantTimelines(store, tenantId)).map((t) => t.meta);
  const branchPoints = new Map<string, bigint[]>();
  for (const meta of timelines) {
    if (meta.ancestor) branchPoints.set(meta.ancestor.timelineId, [...(branchPoints.get(meta.ancestor.timelineId) ?? []), meta.ancestor.lsn]);
  }
  const doomed: Doomed[] = [];
  const keptManifests: SnapshotManifest[] = [];
  for (const meta of timelines) {
    const kept = await collectTimeline(store, meta, branchPoints.get(meta.timelineId) ?? [], now.getTime() - options.pitrRetentionMs, options.dryRun, doomed);
    keptManifests.push(...kept);
  }
  const named = new Set(keptManifests.flatMap((m) => m.files.flatMap((f) => f.chunks)));
  const filesPrefix = fileChunkKey(tenantId, "");
  const tenant: TimelineRef = { tenantId, timelineId: "*" };
  await storeCall(tenant, filesPrefix, "list file chunks", async () => {
    for await (const info of store.listAll(filesPrefix)) {
      const hash = info.key.slice(filesPrefix.length);
      if (!named.has(hash) && info.modified.getTime() < now.getTime() - options.fileChunkGraceMs) {
        doomed.push({ key: info.key, bytes: info.size, kind: "fileChunks" });
      }
    }
  });
  const report: Record<keyof GarbageReport, { objects: number; bytes: number }> = {
    walChunks: { objects: 0, bytes: 0 }, snapshots: { objects: 0, bytes: 0 },
    deadWalChunks: { objects: 0, bytes: 0 }, fileChunks: { objects: 0, bytes: 0 },
  };
  for (const item of doomed) {
    if (!options.dryRun && !(await storeCall(tenant, item.key, "delete", () => store.delete(item.key)))) continue;
    report[item.kind].objects += 1;
    report[item.kind].bytes += item.bytes;
  }
  return report;
}

/** Adds the timeline's garbage to `doomed`; returns the manifests it keeps. */
async function collectTimeline(
  store: BlobStore,
  ref: TimelineRef,
  branchPoints: readonly bigint[],
  retainSinceMs: number,
  dryRun: boolean,
  doomed: Doomed[],
): Promise<SnapshotManifest[]> {
  // Chunks are listed before the history is resolved: a chunk shipped in between is never judged.
  const [chunks, ownSnapshots] = await Promise.all([listWalChunks(store, ref), listSnapshots(store, ref)]);
  const history = await resolveHistory(store, ref);
  const manifests = new Map<string, SnapshotManifest>();
  for (const snapshot of ownSnapshots) manifests.set(snapshot.key, await readSnapshotManifest(store, snapshot));

  const usable = history.snapshots.filter((s) => s.timeline.timelineId === ref.timelineId);
  const segment = BigInt(history.meta.walSegmentBytes);
  const walFromOf = (s: Snapshot): bigint => (manifests.get(s.key)!.redoLsn / segment) * segment;
  const newestAtOrBelow = (lsn: bigint): Snapshot | undefined => usable.filter((s) => s.lsn <= lsn).at(-1);

  // The base of the retention window and the base of each branch point stay, with all WAL from the oldest of them on.
  const retained = usable.filter((s) => Date.parse(manifests.get(s.key)!.createdAt) <= retainSinceMs).at(-1) ?? usable[0];
  if (!retained) return [...manifests.values()];
  const keep = new Set<string>([retained.key, ...usable.filter((s) => s.lsn > retained.lsn).map((s) => s.key)]);
  let horizon = walFromOf(retained);
  for (const point of branchPoints) {
    const base = newestAtOrBelow(point);
    if (!base) return [...manifests.values()];
    keep.add(base.key);
    if (walFromOf(base) < horizon) horizon = walFromOf(base);
  }

  const fence = fenceOf(history.generations);
  const valid = new Set(history.pieces.map((p) => p.chunk.key));
  const doomedWal: Doomed[] = [];
  for (const chunk of chunks) {
    const fencedAt = fence(chunk.generation);
    if (!valid.has(chunk.key) && fencedAt !== undefined && chunk.startLsn >= fencedAt) {
      doomedWal.push({ key: chunk.key, bytes: Number(chunk.endLsn - chunk.startLsn), kind: "deadWalChunks" });
    } else if (valid.has(chunk.key) && chunk.timeline.timelineId === ref.timelineId && chunk.endLsn <= horizon) {
      doomedWal.push({ key: chunk.key, bytes: Number(chunk.endLsn - chunk.startLsn), kind: "walChunks" });
    }
  }
  const keptManifests: SnapshotManifest[] = [];
  for (const snapshot of ownSnapshots) {
    const fencedAt = fence(snapshot.generation);
    const isUsable = usable.some((s) => s.key === snapshot.key);
    const dead = !isUsable && fencedAt !== undefined && snapshot.lsn >= fencedAt;
    if (dead || (isUsable && !keep.has(snapshot.key))) {
      doomed.push({ key: snapshot.key, bytes: (await store.head(snapshot.key))?.size ?? 0, kind: "snapshots" });
    } else {
      keptManifests.push(manifests.get(snapshot.key)!);
    }
  }
  // Readers learn where the WAL now begins before any of it goes.
  if (doomedWal.some((d) => d.kind === "walChunks") && !dryRun) await writeWalHorizon(store, ref, horizon);
  doomed.push(...doomedWal);
  return keptManifests;
}

/**
 * For a generation: the LSN from which its WAL is dead because a later
 * generation started there (0 for a generation that never started but was
 * overtaken), or undefined while nothing later has started.
 */
function fenceOf(generations: Generations): (generation: number) => bigint | undefined {
  return (generation) => {
    let fence: bigint | undefined;
    for (const [g, start] of generations.starts) if (g > generation && (fence === undefined || start < fence)) fence = start;
    if (fence === undefined) return undefined;
    return generations.starts.has(generation) ? fence : 0n;
  };
}
