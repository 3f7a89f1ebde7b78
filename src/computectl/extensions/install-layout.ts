import { randomBytes } from "node:crypto";
import { readFile, rename, stat, unlink, writeFile } from "node:fs/promises";
import path from "node:path";

/** Where a Postgres install keeps extension files (pg_config --sharedir / --pkglibdir). */
export interface PgInstallDirs {
  /** e.g. /usr/share/postgresql/15; control files and scripts go to <sharedir>/extension. */
  readonly sharedir: string;
  /** e.g. /usr/lib/postgresql/15/lib ($libdir). */
  readonly pkglibdir: string;
}

/*
 * Next to each control file compute-ctl keeps, in <sharedir>/extension/:
 * - <name>.pgmesh-pending  while the extension's bundle is not installed. The
 *   compute hook calls compute-ctl when it exists (or the control file does
 *   not), and skips the round trip otherwise.
 * - <name>.pgmesh-installed  the sha256 of the bundle whose files are all in
 *   place, so a later start on the same install does not fetch it again.
 * Postgres only looks at *.control and *.sql files there, so neither is seen.
 */
const pendingSuffix = ".pgmesh-pending";
const installedSuffix = ".pgmesh-installed";

export function extensionDir(dirs: PgInstallDirs): string {
  return path.join(dirs.sharedir, "extension");
}

/** Writes a file through a temp file in the same directory and a rename, so readers see all or nothing. */
export async function writeFileAtomic(file: string, content: string, mode = 0o644): Promise<void> {
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.tmp-${randomBytes(6).toString("hex")}`);
  try {
    await writeFile(temp, content, { mode, flag: "wx" });
    await rename(temp, file);
  } catch (error) {
    await unlink(temp).catch(() => undefined);
    throw error;
  }
}

/** Marks an extension's bundle as not installed yet; the hook then asks compute-ctl. */
export function markPending(dirs: PgInstallDirs, extension: string, sha256: string): Promise<void> {
  return writeFileAtomic(path.join(extensionDir(dirs), extension + pendingSuffix), `${sha256}\n`);
}

/** Records that every file of the bundle is in place, then lifts the pending mark. */
export async function markInstalled(dirs: PgInstallDirs, extension: string, sha256: string): Promise<void> {
  await writeFileAtomic(path.join(extensionDir(dirs), extension + installedSuffix), `${sha256}\n`);
  await unlink(path.join(extensionDir(dirs), extension + pendingSuffix)).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== "ENOENT") throw error;
  });
}

/** The sha256 of the bundle installed for the extension, if any. */
export async function installedSha256(dirs: PgInstallDirs, extension: string): Promise<string | undefined> {
  try {
    return (await readFile(path.join(extensionDir(dirs), extension + installedSuffix), "utf8")).trim();
  } catch {
    return undefined;
  }
}

/** True when the extension's control file is there and its bundle is not pending (the hook's test, too). */
export async function extensionFilesPresent(dirs: PgInstallDirs, extension: string): Promise<boolean> {
  const dir = extensionDir(dirs);
  return (await isFile(path.join(dir, `${extension}.control`))) && !(await isFile(path.join(dir, extension + pendingSuffix)));
}

/** True when <pkglibdir>/<library>.so exists. */
export function libraryFilePresent(dirs: PgInstallDirs, library: string): Promise<boolean> {
  return isFile(path.join(dirs.pkglibdir, `${library}.so`));
}

async function isFile(file: string): Promise<boolean> {
  try {
    return (await stat(file)).isFile();
  } catch {
    return false;
  }
}
