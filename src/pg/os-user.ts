import { execFile } from "node:child_process";
import { chown, lstat, readdir } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

/** The unprivileged account Postgres runs as (it refuses to run as root). */
export interface OsUser {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
}

/**
 * As root: the named account (Debian's package creates `postgres`).
 * As anybody else: the current user, since it cannot switch.
 */
export async function resolveUnprivilegedUser(name = "postgres"): Promise<OsUser> {
  const uid = process.getuid?.() ?? 0;
  if (uid !== 0) {
    const { stdout } = await execFileAsync("id", ["-un"]);
    return { name: stdout.trim(), uid, gid: process.getgid?.() ?? uid };
  }
  try {
    const [u, g] = await Promise.all([
      execFileAsync("id", ["-u", name]),
      execFileAsync("id", ["-g", name]),
    ]);
    return { name, uid: Number(u.stdout.trim()), gid: Number(g.stdout.trim()) };
  } catch {
    throw new Error(`user "${name}" does not exist; Postgres cannot run as root (install postgresql-15, which creates it, or create the user)`);
  }
}

/**
 * The command prefix that runs a program as `user` and kills it with SIGKILL
 * when its parent dies, so no Postgres outlives the process that started it.
 */
export function runAsPrefix(user: OsUser): string[] {
  const switchUser = (process.getuid?.() ?? 0) === 0
    ? [`--reuid=${user.uid}`, `--regid=${user.gid}`, "--clear-groups"]
    : [];
  return ["setpriv", ...switchUser, "--pdeathsig", "SIGKILL", "--"];
}

/** chown -R, without following symlinks. */
export async function chownTree(dir: string, user: OsUser): Promise<void> {
  if ((process.getuid?.() ?? 0) !== 0) return;
  const stat = await lstat(dir);
  await chown(dir, user.uid, user.gid);
  if (!stat.isDirectory()) return;
  for (const entry of await readdir(dir)) {
    await chownTree(path.join(dir, entry), user);
  }
}
