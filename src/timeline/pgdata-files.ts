import { lstat, readdir } from "node:fs/promises";
import path from "node:path";

/** A regular file of PGDATA, relative path "/"-separated. */
export interface PgdataFile {
  readonly path: string;
  readonly size: number;
  readonly mode: number;
  /** Nanoseconds, as a decimal string: with size, what says a file is unchanged since it was last hashed. */
  readonly mtimeNs: string;
}

/** Never in a snapshot, wherever they are (as pg_basebackup leaves them out). */
const excludedNames = new Set(["postmaster.pid", "postmaster.opts", "pg_internal.init", "current_logfiles", "backup_label", "tablespace_map", "recovery.signal", "standby.signal"]);
/** Directories whose contents a snapshot leaves out: WAL travels as chunks, the rest Postgres resets at start. */
const contentsExcluded = new Set(["pg_wal", "pg_replslot", "pg_stat_tmp", "pg_dynshmem", "pg_notify", "pg_serial", "pg_snapshots", "pg_subtrans"]);

/** The files of a snapshot of `pgdata` and the directories to recreate empty, in path order. */
export async function listPgdataFiles(pgdata: string): Promise<{ files: PgdataFile[]; emptyDirs: string[] }> {
  const files: PgdataFile[] = [];
  const emptyDirs: string[] = [];
  const walk = async (relativeDir: string): Promise<number> => {
    let entries;
    try {
      entries = await readdir(path.join(pgdata, relativeDir), { withFileTypes: true });
    } catch (err) {
      // A directory dropped while an online snapshot walks: nothing of it to keep.
      if ((err as NodeJS.ErrnoException).code === "ENOENT" && relativeDir !== "") return 0;
      throw err;
    }
    let kept = 0;
    for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const relativePath = relativeDir === "" ? entry.name : `${relativeDir}/${entry.name}`;
      if (entry.isDirectory()) {
        const inside = contentsExcluded.has(relativePath) || entry.name.startsWith("pgsql_tmp") ? 0 : await walk(relativePath);
        if (inside === 0) emptyDirs.push(relativePath);
        kept += inside;
      } else if (entry.isFile()) {
        if (excludedNames.has(entry.name) || entry.name.startsWith("pgsql_tmp") || entry.name.endsWith(".signal")) continue;
        const stats = await lstat(path.join(pgdata, relativePath), { bigint: true }).catch((err: NodeJS.ErrnoException) => {
          if (err.code === "ENOENT") return undefined;
          throw err;
        });
        if (!stats) continue;
        files.push({ path: relativePath, size: Number(stats.size), mode: Number(stats.mode & 0o7777n), mtimeNs: stats.mtimeNs.toString() });
        kept += 1;
      } else {
        throw new Error(`PGDATA holds ${relativePath}, which is neither a file nor a directory (a tablespace link?); timelines hold plain files only`);
      }
    }
    return kept;
  };
  await walk("");
  return { files, emptyDirs };
}
