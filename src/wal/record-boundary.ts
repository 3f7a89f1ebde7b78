import { readWalRecords, type ReadWalOptions, type WalRecord } from "./read-wal.js";

/**
 * The last complete record that ends at or before `atOrBelow` (its endLsn,
 * MAXALIGN'd, is where the next record would start): normalises an arbitrary
 * LSN down to a record boundary. Undefined when no record from the start ends
 * there.
 */
export async function lastRecordAtOrBelow(options: ReadWalOptions & { readonly atOrBelow: bigint }): Promise<WalRecord | undefined> {
  const endLsn = options.endLsn !== undefined && options.endLsn < options.atOrBelow ? options.endLsn : options.atOrBelow;
  let last: WalRecord | undefined;
  for await (const record of readWalRecords({ ...options, endLsn })) last = record;
  return last;
}
