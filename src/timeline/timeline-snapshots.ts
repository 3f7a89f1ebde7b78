import { open, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { Code } from "@connectrpc/connect";
import type { BlobStore } from "../blob/index.js";
import { formatLsn, parseLsn, readWalRecords, walSegmentFileName } from "../wal/index.js";
import { writeGenerationStart } from "./generations.js";
import { DB_SHUTDOWNED, markCrashed, readControlFile } from "./pg-control.js";
import type { RestorePlan } from "./restore-plan.js";
import { writeSnapshotManifest, type Snapshot } from "./snapshot-manifest.js";
import { defaultChunkBytes, layDownPgdataFiles, uploadPgdataFiles, type FileChunkCache, type TransferOptions } from "./snapshot-transfer.js";
import { TimelineError } from "./timeline-error.js";
import type { TimelineRef } from "./timeline-keys.js";
import { putWalChunk } from "./wal-chunks.js";
import { endOfLastRecord, layDownWal, truncateWalAfter, type WalLayout } from "./wal-laydown.js";

/** Offset of xlp_seg_size in a segment's long page header. */
const segmentSizeOffset = 32;

/** The WAL segment size of a cluster, from the long header of the segment holding its checkpoint. */
export async function walSegmentBytesOf(pgdata: string, pgTli = 1): Promise<number> {
  const control = await readControlFile(pgdata);
  const walDir = path.join(pgdata, "pg_wal");
  // The default size names the segment right whatever the real size: its first page tells the truth.
  const guess = 16 * 1024 * 1024;
  const handle = await open(path.join(walDir, walSegmentFileName(pgTli, control.checkpointLsn / BigInt(guess), guess)), "r");
  try {
    const header = Buffer.alloc(40);
    await handle.read(header, 0, 40, 0);
    return header.readUInt32LE(segmentSizeOffset);
  } finally {
    await handle.close();
  }
}

/** Where the record at `lsn` ends, read from PGDATA's pg_wal. */
async function recordEnd(walDir: string, lsn: bigint, pgTli: number): Promise<bigint> {
  for await (const record of readWalRecords({ walDir, startLsn: lsn, timeline: pgTli })) {
    if (record.startLsn === lsn) return record.endLsn;
    break;
  }
  throw new Error(`no WAL record at ${formatLsn(lsn)} in ${walDir}`);
}

/** The shutdown checkpoint of a cleanly stopped cluster: where it is and where its record ends. */
export async function shutdownCheckpointOf(pgdata: string, pgTli = 1): Promise<{ checkpointLsn: bigint; endLsn: bigint; systemIdentifier: string }> {
  const control = await readControlFile(pgdata);
  if (control.state !== DB_SHUTDOWNED) throw new Error(`the cluster in ${pgdata} was not shut down cleanly (pg_control state ${control.state})`);
  const endLsn = await recordEnd(path.join(pgdata, "pg_wal"), control.checkpointLsn, pgTli);
  return { checkpointLsn: control.checkpointLsn, endLsn, systemIdentifier: control.systemIdentifier };
}

/**
 * A shutdown snapshot of a cleanly stopped PGDATA: its files' chunks, then
 * the manifest. The caller has made the WAL up to the checkpoint's end
 * durable first.
 */
export async function takeShutdownSnapshot(
  store: BlobStore,
  timeline: TimelineRef,
  generation: number,
  pgdata: string,
  options: TransferOptions & { readonly pgMajor: number; readonly pgTli: number },
): Promise<{ snapshot: Snapshot; cache: FileChunkCache }> {
  const checkpoint = await shutdownCheckpointOf(pgdata, options.pgTli);
  const uploaded = await uploadPgdataFiles(store, timeline, pgdata, options);
  const snapshot = await writeSnapshotManifest(store, timeline, generation, {
    kind: "shutdown",
    redoLsn: checkpoint.checkpointLsn,
    checkpointLsn: checkpoint.checkpointLsn,
    endLsn: checkpoint.endLsn,
    pgMajor: options.pgMajor,
    pgTli: options.pgTli,
    systemIdentifier: checkpoint.systemIdentifier,
    createdAt: new Date().toISOString(),
    backupLabel: null,
    chunkBytes: options.chunkBytes ?? defaultChunkBytes,
    files: uploaded.files,
    emptyDirs: uploaded.emptyDirs,
  });
  return { snapshot, cache: uploaded.cache };
}

/** The SQL an online snapshot runs, on one session of the running primary. */
export interface BackupSession {
  query<R extends Record<string, unknown>>(text: string): Promise<{ rows: R[] }>;
}

/**
 * An online snapshot of a running primary: pg_backup_start, the files'
 * changed chunks, pg_backup_stop; the manifest (with the backup label, so a
 * restore replays from the backup's checkpoint) is written only once
 * `shipped` says the WAL up to the backup's end is durable. A compute killed
 * before that leaves no manifest: the previous snapshot stays the newest.
 */
export async function takeOnlineSnapshot(
  store: BlobStore,
  timeline: TimelineRef,
  generation: number,
  pgdata: string,
  session: BackupSession,
  shipped: (lsn: bigint, signal?: AbortSignal) => Promise<void>,
  options: TransferOptions & { readonly pgMajor: number; readonly pgTli: number },
): Promise<{ snapshot: Snapshot; cache: FileChunkCache }> {
  // fast: an immediate checkpoint; a spread one would hold the snapshot for most of checkpoint_timeout.
  await session.query("SELECT pg_catalog.pg_backup_start('pgmesh online snapshot', true)");
  let uploaded;
  let stop: { lsn: string; labelfile: string };
  try {
    uploaded = await uploadPgdataFiles(store, timeline, pgdata, options);
  } finally {
    stop = (await session.query<{ lsn: string; labelfile: string }>("SELECT lsn::text, labelfile FROM pg_catalog.pg_backup_stop(false)")).rows[0]!;
  }
  const label = (field: string): bigint => {
    const m = new RegExp(`^${field}: ([0-9A-F]+/[0-9A-F]+)`, "m").exec(stop.labelfile);
    if (!m) throw new Error(`pg_backup_stop's label has no "${field}" line`);
    return parseLsn(m[1]!);
  };
  const endLsn = parseLsn(stop.lsn);
  await shipped(endLsn, options.signal);
  const control = await readControlFile(pgdata);
  const snapshot = await writeSnapshotManifest(store, timeline, generation, {
    kind: "online",
    redoLsn: label("START WAL LOCATION"),
    checkpointLsn: label("CHECKPOINT LOCATION"),
    endLsn,
    pgMajor: options.pgMajor,
    pgTli: options.pgTli,
    systemIdentifier: control.systemIdentifier,
    createdAt: new Date().toISOString(),
    backupLabel: stop.labelfile,
    chunkBytes: options.chunkBytes ?? defaultChunkBytes,
    files: uploaded.files,
    emptyDirs: uploaded.emptyDirs,
  });
  return { snapshot, cache: uploaded.cache };
}

/**
 * Gives a new root timeline its base, as `generation`: the stopped cluster's
 * WAL from its checkpoint's segment start to the checkpoint's end, a
 * shutdown snapshot, and last the generation's start record (a creator that
 * dies before it leaves a void generation the next start replaces).
 * Returns where the generation's Postgres will write from.
 */
export async function bootstrapTimeline(
  store: BlobStore,
  timeline: TimelineRef,
  generation: number,
  pgdata: string,
  options: TransferOptions & { readonly pgMajor: number; readonly pgTli: number; readonly segmentBytes: number },
): Promise<{ startLsn: bigint; cache: FileChunkCache }> {
  const checkpoint = await shutdownCheckpointOf(pgdata, options.pgTli);
  const segment = BigInt(options.segmentBytes);
  const segno = checkpoint.checkpointLsn / segment;
  const segmentStart = segno * segment;
  const wal = await readFile(path.join(pgdata, "pg_wal", walSegmentFileName(options.pgTli, segno, options.segmentBytes)));
  if ((checkpoint.endLsn - 1n) / segment !== segno) {
    throw new Error(`the shutdown checkpoint at ${formatLsn(checkpoint.checkpointLsn)} crosses a segment boundary; a template must fit one segment`);
  }
  await putWalChunk(store, timeline, {
    startLsn: segmentStart, generation, segmentBytes: options.segmentBytes,
    bytes: wal.subarray(0, Number(checkpoint.endLsn - segmentStart)),
  }, options.signal);
  const { cache } = await takeShutdownSnapshot(store, timeline, generation, pgdata, options);
  await writeGenerationStart(store, timeline, generation, segmentStart);
  return { startLsn: checkpoint.endLsn, cache };
}

/**
 * Lays PGDATA down from a restore plan (only what differs from the cache,
 * when the PGDATA is still there) and its WAL into pg_wal, cut after the
 * last complete record; marks the cluster for crash recovery when WAL
 * follows the snapshot. Returns that record end: where Postgres will write from.
 */
export async function restoreTimeline(
  store: BlobStore,
  plan: RestorePlan,
  pgdata: string,
  options: TransferOptions,
): Promise<{ startLsn: bigint; cache: FileChunkCache }> {
  const { manifest, history } = plan;
  const timeline: TimelineRef = history.meta;
  const cache = await layDownPgdataFiles(store, plan.snapshot.timeline, manifest, pgdata, options);
  const layout: WalLayout = { walDir: path.join(pgdata, "pg_wal"), pgTli: history.meta.pgTli, segmentBytes: history.meta.walSegmentBytes };
  await layDownWal(store, plan.pieces, layout, options);
  const startLsn = await endOfLastRecord(layout, manifest.checkpointLsn, history.durableEnd).catch((err: unknown) => {
    throw new TimelineError(timeline, `the WAL after snapshot ${plan.snapshot.key} is unreadable: ${(err as Error).message}`, Code.DataLoss, plan.snapshot.key, err);
  });
  if (startLsn < manifest.endLsn) {
    throw new TimelineError(timeline, `the WAL ends at ${formatLsn(startLsn)}, before the snapshot's end ${formatLsn(manifest.endLsn)}`, Code.DataLoss, plan.snapshot.key);
  }
  await truncateWalAfter(layout, startLsn);
  if (manifest.backupLabel !== null) {
    await writeFile(path.join(pgdata, "backup_label"), manifest.backupLabel, { mode: 0o600 });
  } else if (startLsn > manifest.endLsn) {
    await markCrashed(pgdata);
  }
  return { startLsn, cache };
}
