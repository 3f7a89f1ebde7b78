export { crc32c } from "./crc32c.js";
export {
  computeRecordCrc, decodeXLogRecord, XLogRecordDecodeError,
  type BlockRef, type DecodedXLogRecord, type RelFileNode,
} from "./decode-xlog-record.js";
export { readWalRecords, type ReadWalOptions, type WalRecord } from "./read-wal.js";
export { lastRecordAtOrBelow } from "./record-boundary.js";
export {
  dateToTimestamp, lastTransactionEndAtOrBefore, timestampToDate, transactionEnd, type TransactionEnd,
} from "./transaction-end.js";
export { BLCKSZ, RM_MAX_BUILTIN_ID, RMGR_NAMES, formatLsn, parseLsn } from "./wal-constants.js";
export { WalFormatError } from "./wal-errors.js";
export { openWalDir, walBytesSource, walSegmentFileName, type WalBytes, type WalSegmentBytes, type WalSource } from "./wal-source.js";
