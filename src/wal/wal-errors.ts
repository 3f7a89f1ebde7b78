import { formatLsn } from "./wal-constants.js";

/** WAL bytes that are not what PostgreSQL 15 writes (bad header, length, CRC). */
export class WalFormatError extends Error {
  constructor(readonly lsn: bigint | undefined, detail: string) {
    super(lsn === undefined ? detail : `WAL at ${formatLsn(lsn)}: ${detail}`);
    this.name = "WalFormatError";
  }
}
