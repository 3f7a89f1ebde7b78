import type { DecodedXLogRecord } from "./decode-xlog-record.js";
import { readWalRecords, type ReadWalOptions, type WalRecord } from "./read-wal.js";

const RM_XACT_ID = 1;
const XLOG_XACT_OPMASK = 0x70;
const XACT_OPS: ReadonlyMap<number, TransactionEnd["kind"]> = new Map([
  [0x00, "commit"],
  [0x20, "abort"],
  [0x30, "commit"], // COMMIT_PREPARED
  [0x40, "abort"], // ABORT_PREPARED
]);

/** Microseconds between the Unix epoch and PostgreSQL's (2000-01-01 UTC). */
const PG_EPOCH_UNIX_MICROS = 946_684_800_000_000n;

/** A commit or abort record's outcome and xact_time. */
export interface TransactionEnd {
  readonly kind: "commit" | "abort";
  /** xact_time: microseconds since 2000-01-01 00:00 UTC (TimestampTz). */
  readonly timestamp: bigint;
}

export function timestampToDate(timestamp: bigint): Date {
  return new Date(Number((timestamp + PG_EPOCH_UNIX_MICROS) / 1000n));
}

export function dateToTimestamp(date: Date): bigint {
  return BigInt(date.getTime()) * 1000n - PG_EPOCH_UNIX_MICROS;
}

/**
 * The transaction end a Transaction-rmgr record carries (COMMIT, ABORT and
 * their PREPARED forms; xl_xact_commit and xl_xact_abort both begin with
 * xact_time), or undefined for any other record.
 */
export function transactionEnd(record: DecodedXLogRecord & { readonly bytes: Uint8Array }): TransactionEnd | undefined {
  if (record.rmid !== RM_XACT_ID) return undefined;
  const kind = XACT_OPS.get(record.info & XLOG_XACT_OPMASK);
  if (!kind || record.mainDataLength < 8) return undefined;
  const mainData = record.bytes.subarray(record.totalLength - record.mainDataLength);
  return { kind, timestamp: new DataView(mainData.buffer, mainData.byteOffset, 8).getBigInt64(0, true) };
}

/**
 * The last commit or abort record at or before `time`, with Postgres's
 * recovery_target_time rule (inclusive): reading stops at the first
 * transaction end stamped after `time`, since stamps are taken before the
 * record is inserted and so are not strictly ordered. Undefined when the first
 * transaction end is already after `time` or there is none.
 */
export async function lastTransactionEndAtOrBefore(
  options: ReadWalOptions & { readonly time: Date },
): Promise<{ readonly record: WalRecord; readonly end: TransactionEnd } | undefined> {
  const target = dateToTimestamp(options.time);
  let last: { record: WalRecord; end: TransactionEnd } | undefined;
  for await (const record of readWalRecords(options)) {
    const end = transactionEnd(record);
    if (!end) continue;
    if (end.timestamp > target) break;
    last = { record, end };
  }
  return last;
}
