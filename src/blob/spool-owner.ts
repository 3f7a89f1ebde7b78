import { randomUUID } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";

/** Suffix of spool files; they live in a directory no listing looks into. */
export const spoolFileSuffix = ".part";

/** Who wrote a spool file: the host, and the process by pid and start time (which a reused pid does not share). */
export interface SpoolOwner {
  readonly host: string;
  readonly pid: number;
  readonly startTicks: string;
}

const hasProc = existsSync("/proc/self/stat");
const ownHost = hostname().replace(/[^A-Za-z0-9-]/g, "-").slice(0, 63) || "host";
let ownOwner: SpoolOwner | undefined;

/**
 * A new spool file's path in `dir`, naming its owner:
 * `<label>.<host>.<pid>.<start ticks>.<uuid>.part`, so a sweep can tell
 * whether the process writing it still runs.
 */
export function spoolFilePath(dir: string, label: string): string {
  ownOwner ??= { host: ownHost, pid: process.pid, startTicks: hasProc ? startTicksOf(readFileSync("/proc/self/stat", "utf8")) : "0" };
  const { host, pid, startTicks } = ownOwner;
  return join(dir, `${label}.${host}.${pid}.${startTicks}.${randomUUID()}${spoolFileSuffix}`);
}

const ownedName = /^[a-z-]+\.([A-Za-z0-9-]+)\.(\d+)\.(\d+)\.[0-9a-f-]{36}\.part$/;

/** The owner a spool file's name records, or undefined for a name without one. */
export function spoolOwnerOf(name: string): SpoolOwner | undefined {
  const match = ownedName.exec(name);
  return match ? { host: match[1]!, pid: Number(match[2]), startTicks: match[3]! } : undefined;
}

/**
 * Whether the owner may still be writing: true for another host's process
 * (this host cannot see it), else whether a process with that pid and start
 * time runs here.
 */
export async function spoolOwnerMayLive(owner: SpoolOwner): Promise<boolean> {
  // Without /proc (not Linux) liveness cannot be told: keep the file.
  if (owner.host !== ownHost || !hasProc) return true;
  try {
    return startTicksOf(await readFile(`/proc/${owner.pid}/stat`, "utf8")) === owner.startTicks;
  } catch {
    return false; // no such process
  }
}

/** Field 22 of /proc/<pid>/stat (start time in clock ticks after boot); the name before it may hold spaces. */
function startTicksOf(stat: string): string {
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? "0";
}
