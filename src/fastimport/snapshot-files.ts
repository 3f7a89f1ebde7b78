import { lstat, readdir } from "node:fs/promises";
import path from "node:path";
import { FastImportError } from "./fast-import-errors.js";

/** One file of the snapshot: its path relative to PGDATA ("/"-separated) and size. */
export interface SnapshotFile {
  readonly relativePath: string;
  readonly size: number;
}

export interface SnapshotFileList {
  readonly files: readonly SnapshotFile[];
  /** Directories left without any file (the compute recreates them). */
  readonly emptyDirs: readonly string[];
  readonly totalBytes: number;
}

/** Never part of a snapshot, wherever they are (as pg_basebackup leaves them out). */
const excludedNames = new Set(["postmaster.pid", "postmaster.opts", "pg_internal.init", "current_logfiles"]);
/** Directories whose contents Postgres resets at start-up. */
const resetDirs = new Set(["pg_stat_tmp", "pg_replslot", "pg_dynshmem", "pg_notify", "pg_serial", "pg_snapshots", "pg_wal/archive_status"]);

/**
 * The files a compute needs from a cleanly shut down PGDATA. Of pg_wal only
 * `walFile` is kept, the segment that holds the shutdown checkpoint: older
 * segments are not needed after a clean shutdown, later ones are recycled
 * segments with stale contents that Postgres overwrites.
 */
export async function listSnapshotFiles(pgdata: string, walFile: string): Promise<SnapshotFileList> {
  const files: SnapshotFile[] = [];
  const emptyDirs: string[] = [];
  const walk = async (relativeDir: string): Promise<number> => {
    const entries = await readdir(path.join(pgdata, relativeDir), { withFileTypes: true });
    let kept = 0;
    for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const relativePath = relativeDir === "" ? entry.name : `${relativeDir}/${entry.name}`;
      if (entry.isDirectory()) {
        const inside = resetDirs.has(relativePath) || entry.name.startsWith("pgsql_tmp") ? 0 : await walk(relativePath);
        if (inside === 0) emptyDirs.push(relativePath);
        kept += inside;
      } else if (entry.isFile()) {
        if (excludedNames.has(entry.name) || entry.name.startsWith("pgsql_tmp")) continue;
        if (relativeDir === "pg_wal" && entry.name !== walFile) continue;
        const { size } = await lstat(path.join(pgdata, relativePath));
        files.push({ relativePath, size });
        kept += 1;
      } else {
        throw new FastImportError("upload", `PGDATA holds ${relativePath}, which is neither a file nor a directory (a tablespace link?); snapshots hold plain files only`);
      }
    }
    return kept;
  };
  await walk("");
  if (!files.some((file) => file.relativePath === `pg_wal/${walFile}`)) {
    throw new FastImportError("upload", `the WAL segment pg_wal/${walFile} of the shutdown checkpoint is missing from PGDATA`);
  }
  return { files, emptyDirs, totalBytes: files.reduce((sum, file) => sum + file.size, 0) };
}

/** What pg_controldata says about a stopped cluster. */
export interface ControlData {
  readonly state: string;
  /** "Latest checkpoint's REDO WAL file". */
  readonly redoWalFile: string;
}

export function parseControlData(output: string): ControlData {
  const field = (label: string): string => {
    const line = output.split("\n").find((l) => l.startsWith(`${label}:`));
    if (line === undefined) throw new FastImportError("stop", `pg_controldata printed no "${label}" line`);
    return line.slice(label.length + 1).trim();
  };
  return { state: field("Database cluster state"), redoWalFile: field("Latest checkpoint's REDO WAL file") };
}
