/** Layout facts of PostgreSQL 15 WAL (xlog_internal.h, xlogrecord.h). */
export const BLCKSZ = 8192;
export const XLOG_BLCKSZ = 8192;
export const XLOG_PAGE_MAGIC_PG15 = 0xd110;
export const DEFAULT_WAL_SEGMENT_BYTES = 16 * 1024 * 1024;

/** MAXALIGN on x86-64 and arm64. */
export const MAXIMUM_ALIGNOF = 8;

export const SIZE_OF_XLOG_SHORT_PHD = 24;
export const SIZE_OF_XLOG_LONG_PHD = 40;
export const SIZE_OF_XLOG_RECORD = 24;
/** offsetof(XLogRecord, xl_crc): the header bytes the CRC covers. */
export const XLOG_RECORD_CRC_OFFSET = 20;

export const XLP_FIRST_IS_CONTRECORD = 0x0001;
export const XLP_LONG_HEADER = 0x0002;
export const XLP_FIRST_IS_OVERWRITE_CONTRECORD = 0x0008;
export const XLP_ALL_FLAGS = 0x000f;

export const XLR_MAX_BLOCK_ID = 32;
export const XLR_BLOCK_ID_DATA_SHORT = 255;
export const XLR_BLOCK_ID_DATA_LONG = 254;
export const XLR_BLOCK_ID_ORIGIN = 253;
export const XLR_BLOCK_ID_TOPLEVEL_XID = 252;

export const BKPBLOCK_FORK_MASK = 0x0f;
export const BKPBLOCK_HAS_IMAGE = 0x10;
export const BKPBLOCK_HAS_DATA = 0x20;
export const BKPBLOCK_WILL_INIT = 0x40;
export const BKPBLOCK_SAME_REL = 0x80;

export const BKPIMAGE_HAS_HOLE = 0x01;
export const BKPIMAGE_APPLY = 0x02;
export const BKPIMAGE_COMPRESSED_MASK = 0x04 | 0x08 | 0x10;

export const RM_XLOG_ID = 0;
export const XLOG_SWITCH = 0x40;
export const XLR_RMGR_INFO_MASK = 0xf0;

/** Built-in resource managers of PostgreSQL 15, by id (rmgrlist.h). */
export const RMGR_NAMES: readonly string[] = [
  "XLOG", "Transaction", "Storage", "CLOG", "Database", "Tablespace", "MultiXact",
  "RelMap", "Standby", "Heap2", "Heap", "Btree", "Hash", "Gin", "Gist", "Sequence",
  "SPGist", "BRIN", "CommitTs", "ReplicationOrigin", "Generic", "LogicalMessage",
];
export const RM_MAX_BUILTIN_ID = RMGR_NAMES.length - 1;

/** Rounds up to MAXIMUM_ALIGNOF. */
export function maxAlign(n: number): number {
  return (n + MAXIMUM_ALIGNOF - 1) & ~(MAXIMUM_ALIGNOF - 1);
}

/** "X/Y" as Postgres prints an LSN. */
export function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase().padStart(8, "0")}`;
}

/** Parses "X/Y" into an LSN. */
export function parseLsn(text: string): bigint {
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text.trim());
  if (!m) throw new Error(`"${text}" is not an LSN; expected hex "X/Y", e.g. 0/16B3748`);
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}
