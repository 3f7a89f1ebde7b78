import { Code } from "@connectrpc/connect";
import type { BlobStore } from "../blob/index.js";
import { formatLsn, parseLsn } from "../wal/index.js";
import { getJson, putJson } from "./json-object.js";
import { storeCall, TimelineError } from "./timeline-error.js";
import { parseSnapshotKey, snapshotKey, snapshotsPrefix, type SnapshotName, type TimelineRef } from "./timeline-keys.js";

/** One file of a snapshot: its content is the concatenation of its chunks (tenants/<tenant>/files/<sha256>). */
export interface SnapshotFileEntry {
  /** Relative to PGDATA, "/"-separated. */
  readonly path: string;
  readonly size: number;
  readonly mode: number;
  readonly chunks: readonly string[];
}

/** A snapshot's manifest: the PGDATA files and the WAL range recovery needs. */
export interface SnapshotManifest {
  /** shutdown: of a cleanly stopped cluster; online: taken between pg_backup_start and pg_backup_stop. */
  readonly kind: "shutdown" | "online";
  readonly redoLsn: bigint;
  readonly checkpointLsn: bigint;
  /** Recovery must replay WAL at least up to here. The manifest key carries it. */
  readonly endLsn: bigint;
  readonly pgMajor: number;
  readonly pgTli: number;
  readonly systemIdentifier: string;
  readonly createdAt: string;
  /** pg_backup_stop's label of an online snapshot, written into PGDATA on restore. */
  readonly backupLabel: string | null;
  /** Bytes per file chunk (each file is split at multiples of it). */
  readonly chunkBytes: number;
  readonly files: readonly SnapshotFileEntry[];
  /** Directories to recreate empty. */
  readonly emptyDirs: readonly string[];
}

/** A snapshot in the store (its manifest key). */
export interface Snapshot extends SnapshotName {
  readonly timeline: TimelineRef;
  readonly key: string;
}

/** The snapshots of the timeline (not its ancestors'), oldest first. */
export async function listSnapshots(store: BlobStore, timeline: TimelineRef): Promise<Snapshot[]> {
  const prefix = snapshotsPrefix(timeline);
  const snapshots: Snapshot[] = [];
  await storeCall(timeline, prefix, "list snapshots", async () => {
    for await (const info of store.listAll(prefix)) {
      const name = parseSnapshotKey(info.key);
      if (name) snapshots.push({ ...name, timeline, key: info.key });
    }
  });
  return snapshots;
}

/** Writes the manifest (the snapshot exists from now on; every chunk it names must already be stored). */
export async function writeSnapshotManifest(
  store: BlobStore,
  timeline: TimelineRef,
  generation: number,
  manifest: SnapshotManifest,
): Promise<Snapshot> {
  const snapshot: Snapshot = { lsn: manifest.endLsn, generation, timeline, key: snapshotKey(timeline, { lsn: manifest.endLsn, generation }) };
  await putJson(store, timeline, snapshot.key, {
    kind: manifest.kind,
    redo_lsn: formatLsn(manifest.redoLsn),
    checkpoint_lsn: formatLsn(manifest.checkpointLsn),
    end_lsn: formatLsn(manifest.endLsn),
    pg_major: manifest.pgMajor,
    pg_tli: manifest.pgTli,
    system_identifier: manifest.systemIdentifier,
    created_at: manifest.createdAt,
    backup_label: manifest.backupLabel,
    chunk_bytes: manifest.chunkBytes,
    files: manifest.files,
    empty_dirs: manifest.emptyDirs,
  });
  return snapshot;
}

/** The manifest of a listed snapshot; DATA_LOSS naming the key when it is gone or malformed. */
export async function readSnapshotManifest(store: BlobStore, snapshot: Snapshot): Promise<SnapshotManifest> {
  const { timeline, key } = snapshot;
  const json = (await getJson(store, timeline, key)) as Record<string, unknown> | undefined;
  const bad = (what: string): never => {
    throw new TimelineError(timeline, `snapshot manifest ${what}`, Code.DataLoss, key);
  };
  if (json === undefined) return bad("disappeared");
  if (typeof json !== "object" || json === null) return bad("is not an object");
  const lsn = (field: string): bigint => {
    try {
      return parseLsn(String(json[field]));
    } catch {
      return bad(`has no valid ${field}`);
    }
  };
  const kind = json.kind;
  if (kind !== "shutdown" && kind !== "online") bad(`has an unknown kind ${JSON.stringify(kind)}`);
  if (!Array.isArray(json.files)) bad("has no files");
  for (const file of json.files as SnapshotFileEntry[]) {
    if (typeof file?.path !== "string" || !Number.isInteger(file.size) || !Array.isArray(file.chunks) ||
      file.path.split("/").some((part) => part === "" || part === "." || part === "..") ||
      file.chunks.some((c) => typeof c !== "string" || !/^[0-9a-f]{64}$/.test(c))) {
      bad(`has a malformed file entry ${JSON.stringify(file).slice(0, 120)}`);
    }
  }
  const manifest: SnapshotManifest = {
    kind: kind as SnapshotManifest["kind"],
    redoLsn: lsn("redo_lsn"),
    checkpointLsn: lsn("checkpoint_lsn"),
    endLsn: lsn("end_lsn"),
    pgMajor: Number(json.pg_major),
    pgTli: Number(json.pg_tli),
    systemIdentifier: String(json.system_identifier),
    createdAt: String(json.created_at),
    backupLabel: typeof json.backup_label === "string" ? json.backup_label : null,
    chunkBytes: Number(json.chunk_bytes),
    files: json.files as SnapshotFileEntry[],
    emptyDirs: Array.isArray(json.empty_dirs) ? (json.empty_dirs as string[]) : [],
  };
  if (manifest.endLsn !== snapshot.lsn) bad(`says end_lsn ${formatLsn(manifest.endLsn)}, its key ${formatLsn(snapshot.lsn)}`);
  if (!Number.isInteger(manifest.chunkBytes) || manifest.chunkBytes <= 0) bad("has no valid chunk_bytes");
  return manifest;
}
