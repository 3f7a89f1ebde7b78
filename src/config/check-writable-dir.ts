import { mkdir, open, stat, unlink } from "node:fs/promises";
import { join } from "node:path";
import { exitWithUsageError, type Program } from "./parse-command-line.js";
import { UsageError } from "./usage-error.js";

/**
 * Checks at start that a local directory a flag names is a directory this
 * process can create files in, so a bad one stops the binary with a message
 * naming the flag instead of failing every later request. With `create`, a
 * missing directory (and its parents) is created first. Throws UsageError.
 */
export async function checkWritableDir(dir: string, flag: string, options: { readonly create?: boolean } = {}): Promise<void> {
  const refuse = (problem: string): never => {
    throw new UsageError(`${flag} ${JSON.stringify(dir)} ${problem}; give a writable directory`);
  };
  if (options.create) {
    await mkdir(dir, { recursive: true }).catch((error: NodeJS.ErrnoException) => refuse(`cannot be created (${error.code})`));
  }
  const stats = await stat(dir).catch((error: NodeJS.ErrnoException) =>
    refuse(error.code === "ENOENT" ? "does not exist" : `cannot be read (${error.code})`),
  );
  if (!stats.isDirectory()) refuse("is not a directory");
  const probe = join(dir, `.pgmesh-write-check-${process.pid}`);
  const file = await open(probe, "wx").catch((error: NodeJS.ErrnoException) => refuse(`is not writable (${error.code})`));
  await file.close();
  await unlink(probe);
}

/** A local directory a binary needs, the flag that names it, and whether it is created when missing. */
export interface NeededDir {
  readonly dir: string;
  readonly flag: string;
  readonly create?: boolean;
}

/** For cmd/ files: checks each directory with checkWritableDir; the first bad one prints its error and exits 2. */
export async function exitUnlessWritableDirs(program: Program, dirs: readonly NeededDir[]): Promise<void> {
  try {
    for (const { dir, flag, create } of dirs) await checkWritableDir(dir, flag, { create: create ?? false });
  } catch (error) {
    if (error instanceof UsageError) exitWithUsageError(program, error);
    throw error;
  }
}

/** The directory of file:// storage (created if missing), none for s3://: what a service binary checks at start. */
export function storageDirs(config: { readonly storageDir: string | undefined }): NeededDir[] {
  return config.storageDir === undefined ? [] : [{ dir: config.storageDir, flag: "--storage", create: true }];
}
