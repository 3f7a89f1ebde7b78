import { chmod, mkdir, readdir, stat } from "node:fs/promises";
import path from "node:path";
import { FastImportError, WorkdirNotEmptyError } from "./fast-import-errors.js";

/** Where an import keeps its files inside --workdir. */
export interface WorkdirLayout {
  readonly root: string;
  readonly pgdata: string;
  /** pg_dump directory archives, one per database. */
  readonly dumps: string;
  /** Unix socket directory of the local Postgres. */
  readonly socketDir: string;
  readonly postgresLog: string;
}

export function workdirLayout(root: string): WorkdirLayout {
  return {
    root,
    pgdata: path.join(root, "pgdata"),
    dumps: path.join(root, "dump"),
    socketDir: path.join(root, "run"),
    postgresLog: path.join(root, "postgres.log"),
  };
}

/**
 * Creates the working directory, or accepts an existing empty one; refuses
 * one that holds anything (and touches nothing in it). The directory is made
 * traversable so the Postgres user can reach PGDATA inside it.
 */
export async function prepareWorkdir(root: string): Promise<WorkdirLayout> {
  const info = await stat(root).catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return undefined;
    throw error;
  });
  if (info === undefined) {
    await mkdir(root, { recursive: true, mode: 0o755 });
  } else {
    if (!info.isDirectory()) throw new FastImportError("check", `the working directory ${root} exists and is not a directory; give an empty or new directory`);
    const entries = await readdir(root);
    if (entries.length > 0) throw new WorkdirNotEmptyError(root, entries.sort());
  }
  await chmod(root, 0o755);
  const layout = workdirLayout(root);
  await mkdir(layout.dumps, { mode: 0o700 });
  return layout;
}
