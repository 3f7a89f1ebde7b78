import { readFile } from "node:fs/promises";
import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { execa } from "execa";

/** One row of /proc/sysvipc/shm. */
interface SysvSegment {
  readonly key: number;
  readonly id: number;
  readonly creatorPid: number;
  readonly attached: number;
}

export interface RemoveOrphanedShmemOptions {
  /** Only a segment created by this pid (the postmaster or single-user backend that was reaped). */
  readonly creatorPid?: number;
  /**
   * A killed postmaster's children detach on their own once they notice it is
   * gone: wait up to this long for the segment to have no process attached.
   */
  readonly waitMs?: number;
}

/**
 * Removes the System V segment that the Postgres of `dataDir` left behind
 * when it died without cleaning up (SIGKILL, _exit): the one named in line 7
 * of postmaster.pid, and only if its creator is dead and no process is
 * attached — a segment still in use is what keeps a second postmaster off the
 * same data directory, so it is never touched. Postgres removes a stale
 * segment itself on its next start in the same directory; this is for
 * supervisors that wipe or drop the directory instead. Resolves true if it
 * removed one.
 */
export async function removeOrphanedShmem(dataDir: string, options: RemoveOrphanedShmemOptions = {}): Promise<boolean> {
  const named = await segmentOfLockFile(path.join(dataDir, "postmaster.pid"));
  if (!named) return false;
  const deadline = Date.now() + (options.waitMs ?? 0);
  for (let pause = 5; ; pause = Math.min(pause * 2, 100)) {
    const segment = (await listSegments()).find((s) => s.id === named.id && s.key === named.key);
    if (!segment) return false;
    if (options.creatorPid !== undefined && segment.creatorPid !== options.creatorPid) return false;
    if (segment.attached === 0 && !isAlive(segment.creatorPid)) {
      // It may have gone between the read and here; ipcrm then fails harmlessly.
      const result = await execa("ipcrm", ["-m", String(segment.id)], { reject: false });
      return result.exitCode === 0;
    }
    if (Date.now() >= deadline) return false;
    await delay(pause);
  }
}

/** Line 7 of postmaster.pid: "key shmid" (both absent before shared memory exists). */
async function segmentOfLockFile(pidFile: string): Promise<{ key: number; id: number } | undefined> {
  let text: string;
  try {
    text = await readFile(pidFile, "utf8");
  } catch {
    return undefined;
  }
  const match = /^\s*(\d+)\s+(\d+)\s*$/.exec(text.split("\n")[6] ?? "");
  return match ? { key: uint32(match[1]!), id: Number(match[2]) } : undefined;
}

async function listSegments(): Promise<SysvSegment[]> {
  const [header, ...rows] = (await readFile("/proc/sysvipc/shm", "utf8")).trim().split("\n");
  const columns = header!.trim().split(/\s+/);
  const at = (name: string) => columns.indexOf(name);
  return rows.map((row) => {
    const f = row.trim().split(/\s+/);
    const n = (name: string) => Number(f[at(name)]);
    return { key: uint32(f[at("key")]!), id: n("shmid"), creatorPid: n("cpid"), attached: n("nattch") };
  });
}

/** key_t is an int: /proc prints it signed, postmaster.pid as unsigned long. */
function uint32(decimal: string): number {
  return Number(BigInt.asUintN(32, BigInt(decimal)));
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
