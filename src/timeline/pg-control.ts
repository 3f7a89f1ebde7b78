import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { crc32c } from "../wal/index.js";

/** The parts of global/pg_control (PostgreSQL 15, 64-bit) a timeline start reads or changes. */
export interface ControlFile {
  readonly systemIdentifier: string;
  /** DBState: 1 shut down, 6 in production, … */
  readonly state: number;
  readonly checkpointLsn: bigint;
  readonly redoLsn: bigint;
}

export const DB_SHUTDOWNED = 1;
export const DB_IN_PRODUCTION = 6;

const stateOffset = 16;

export async function readControlFile(pgdata: string): Promise<ControlFile> {
  const bytes = await readFile(controlPath(pgdata));
  return {
    systemIdentifier: bytes.readBigUInt64LE(0).toString(),
    state: bytes.readInt32LE(stateOffset),
    checkpointLsn: bytes.readBigUInt64LE(32),
    redoLsn: bytes.readBigUInt64LE(40),
  };
}

/**
 * Marks the cluster as not cleanly shut down, so Postgres runs crash recovery
 * from its checkpoint through every WAL record in pg_wal (a cluster marked
 * "shut down" would start writing right after its checkpoint and overwrite
 * the WAL that follows). The CRC is found where it verifies (its offset is
 * the size of the struct before it) and recomputed.
 */
export async function markCrashed(pgdata: string): Promise<void> {
  const bytes = await readFile(controlPath(pgdata));
  const crcOffset = findCrcOffset(bytes);
  bytes.writeInt32LE(DB_IN_PRODUCTION, stateOffset);
  bytes.writeUInt32LE(crc32c(bytes.subarray(0, crcOffset)), crcOffset);
  await writeFile(controlPath(pgdata), bytes);
}

function findCrcOffset(bytes: Buffer): number {
  for (let offset = 64; offset + 4 <= 1024; offset += 4) {
    if (crc32c(bytes.subarray(0, offset)) === bytes.readUInt32LE(offset)) return offset;
  }
  throw new Error("global/pg_control has no valid CRC in its first 1 KiB (not a PostgreSQL 15 control file?)");
}

function controlPath(pgdata: string): string {
  return path.join(pgdata, "global", "pg_control");
}
