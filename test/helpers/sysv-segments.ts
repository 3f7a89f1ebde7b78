import { readFile } from "node:fs/promises";

/** One System V shared memory segment, as /proc/sysvipc/shm lists it. */
export interface SysvSegment {
  /** 0 (IPC_PRIVATE) once the segment is marked for removal and lives on only while attached. */
  readonly key: number;
  readonly id: number;
  readonly creatorPid: number;
  readonly attached: number;
}

export async function sysvSegments(): Promise<SysvSegment[]> {
  const rows = (await readFile("/proc/sysvipc/shm", "utf8")).trim().split("\n").slice(1);
  return rows.map((row) => {
    const [key, id, , , creatorPid, , attached] = row.trim().split(/\s+/).map(Number);
    return { key: key!, id: id!, creatorPid: creatorPid!, attached: attached! };
  });
}

/** The segment id in line 7 ("key shmid") of a postmaster.pid's text. */
export function segmentIdOfLockFile(postmasterPid: string): number {
  return Number(postmasterPid.split("\n")[6]!.trim().split(/\s+/)[1]);
}
