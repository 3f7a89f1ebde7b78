import { computeRecordCrc, decodeXLogRecord, XLogRecordDecodeError, type DecodedXLogRecord } from "./decode-xlog-record.js";
import {
  RM_XLOG_ID, SIZE_OF_XLOG_LONG_PHD, SIZE_OF_XLOG_RECORD, SIZE_OF_XLOG_SHORT_PHD,
  XLOG_BLCKSZ, XLOG_PAGE_MAGIC_PG15, XLOG_SWITCH, XLP_ALL_FLAGS, XLP_FIRST_IS_CONTRECORD, XLP_FIRST_IS_OVERWRITE_CONTRECORD, XLP_LONG_HEADER,
  XLR_RMGR_INFO_MASK, formatLsn, maxAlign,
} from "./wal-constants.js";
import { WalFormatError } from "./wal-errors.js";
import { openWalDir, type WalSegmentBytes, type WalSource } from "./wal-source.js";

/** One WAL record as read from WAL bytes. */
export interface WalRecord extends DecodedXLogRecord {
  /** Where the record starts (ReadRecPtr). */
  readonly startLsn: bigint;
  /**
   * EndRecPtr as xlogreader.c sets it: just past the record, MAXALIGN'd, with
   * the page headers it crossed counted; for XLOG_SWITCH, the end of the
   * segment. This is the LSN redo stamps on the pages it changes.
   */
  readonly endLsn: bigint;
  /** The raw XLogRecord, page headers stripped (xl_tot_len bytes). */
  readonly bytes: Uint8Array;
}

/** Where to read: a pg_wal directory, or any WalSource. */
export type ReadWalOptions = ({
  /** A pg_wal directory (or any directory of segment files). */
  readonly walDir: string;
  /** Timeline (default: the highest timeline with a segment in walDir). */
  readonly timeline?: number;
} | {
  readonly source: WalSource;
}) & {
  /**
   * Yield records starting at or after this LSN (default: from the first byte
   * the source holds). Where the source holds the start of this LSN's segment,
   * reading begins at the segment's first record; otherwise startLsn must be
   * a record boundary.
   */
  readonly startLsn?: bigint;
  /** Treat the bytes at and after this LSN as absent: yield only records that end at or before it. */
  readonly endLsn?: bigint;
};

interface PageHeader {
  readonly size: number;
  readonly info: number;
  readonly remLen: number;
}

interface WalPage {
  readonly header: PageHeader | undefined;
  readonly bytes: Uint8Array;
  readonly heldFrom: number;
}

/** Pages of a WalSource below an optional limit, keeping the last two segments in memory. */
class WalPages {
  private readonly cache = new Map<bigint, WalSegmentBytes | undefined>();

  constructor(
    readonly source: WalSource,
    readonly endLsn: bigint | undefined,
  ) {}

  get segmentBytes(): number {
    return this.source.segmentBytes;
  }

  async segment(segno: bigint): Promise<WalSegmentBytes | undefined> {
    if (this.cache.has(segno)) return this.cache.get(segno);
    const data = await this.source.segment(segno);
    if (this.cache.size >= 2) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(segno, data);
    return data;
  }

  /**
   * The page at pageLsn: its held bytes (indexed by offset in the page, ending
   * where the held bytes end), or undefined where valid WAL ends (nothing held,
   * zeroed or recycled page). A page whose held bytes begin after its start
   * (a source that begins at a record in the middle of a page) has no header;
   * bytes before `heldFrom` are zeros.
   */
  async page(pageLsn: bigint): Promise<WalPage | undefined> {
    const segBytes = BigInt(this.segmentBytes);
    const seg = await this.segment(pageLsn / segBytes);
    if (!seg) return undefined;
    const offset = Number(pageLsn % segBytes);
    const heldFrom = Math.max(0, seg.offset - offset);
    let heldEnd = Math.min(XLOG_BLCKSZ, seg.offset + seg.bytes.length - offset);
    if (this.endLsn !== undefined && pageLsn + BigInt(heldEnd) > this.endLsn) heldEnd = Number(this.endLsn - pageLsn);
    if (heldEnd <= heldFrom) return undefined;
    if (heldFrom > 0) {
      const bytes = new Uint8Array(heldEnd);
      bytes.set(seg.bytes.subarray(0, heldEnd - heldFrom), heldFrom);
      return { header: undefined, bytes, heldFrom };
    }
    if (heldEnd < SIZE_OF_XLOG_SHORT_PHD) return undefined;
    const bytes = seg.bytes.subarray(offset - seg.offset, offset - seg.offset + heldEnd);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const magic = view.getUint16(0, true);
    const info = view.getUint16(2, true);
    const pageAddr = view.getBigUint64(8, true);
    if (magic === 0 && pageAddr === 0n) return undefined;
    if (magic !== XLOG_PAGE_MAGIC_PG15) {
      throw new WalFormatError(pageLsn, `page magic 0x${magic.toString(16)} is not PostgreSQL 15's 0x${XLOG_PAGE_MAGIC_PG15.toString(16)}`);
    }
    if (pageAddr !== pageLsn) return undefined;
    if ((info & ~XLP_ALL_FLAGS) !== 0) throw new WalFormatError(pageLsn, `invalid page info flags 0x${info.toString(16)}`);
    const long = (info & XLP_LONG_HEADER) !== 0;
    if (offset === 0 && !long) throw new WalFormatError(pageLsn, "the first page of a segment lacks its long header");
    if (long && bytes.length < SIZE_OF_XLOG_LONG_PHD) return undefined;
    if (long && view.getUint32(32, true) !== this.segmentBytes) {
      throw new WalFormatError(pageLsn, `segment size ${view.getUint32(32, true)} in the long header differs from ${this.segmentBytes}`);
    }
    return { header: { size: long ? SIZE_OF_XLOG_LONG_PHD : SIZE_OF_XLOG_SHORT_PHD, info, remLen: view.getUint32(16, true) }, bytes, heldFrom: 0 };
  }
}

/** The first record boundary of a segment, past a record continued from the previous one. */
async function firstRecordOfSegment(pages: WalPages, segno: bigint): Promise<bigint | undefined> {
  let pageLsn = segno * BigInt(pages.segmentBytes);
  for (;;) {
    const page = await pages.page(pageLsn);
    if (!page?.header) return undefined;
    const { size, info, remLen } = page.header;
    if ((info & XLP_FIRST_IS_CONTRECORD) === 0) return pageLsn + BigInt(size);
    if (maxAlign(remLen) < XLOG_BLCKSZ - size) return pageLsn + BigInt(size + maxAlign(remLen));
    pageLsn += BigInt(XLOG_BLCKSZ);
  }
}

/** Where to read on when a record's continuation was overwritten (after a crash mid-record). */
interface Restart {
  readonly restartAt: bigint;
}

/** Reads the record at `at`; undefined where valid WAL ends. */
async function readRecordAt(files: WalPages, at: bigint): Promise<WalRecord | Restart | undefined> {
  const pageSize = BigInt(XLOG_BLCKSZ);
  let pos = at;
  if (pos % pageSize === 0n) {
    const page = await files.page(pos);
    if (!page?.header) return undefined;
    pos += BigInt(page.header.size);
  }
  const startLsn = pos;
  let page = await files.page(pos - (pos % pageSize));
  if (!page) return undefined;
  const inFirstPage = Number(pos % pageSize);
  if (inFirstPage < page.heldFrom || page.bytes.length < inFirstPage + 4) return undefined;
  const totalLength = new DataView(page.bytes.buffer, page.bytes.byteOffset).getUint32(inFirstPage, true);
  if (totalLength === 0) return undefined;
  if (totalLength < SIZE_OF_XLOG_RECORD || totalLength > 0x3fffffff) {
    throw new WalFormatError(startLsn, `invalid record length ${totalLength}`);
  }
  const bytes = new Uint8Array(totalLength);
  let copied = 0;
  for (;;) {
    const inPage = Number(pos % pageSize);
    const n = Math.min(XLOG_BLCKSZ - inPage, totalLength - copied);
    if (page.bytes.length < inPage + n) return undefined;
    bytes.set(page.bytes.subarray(inPage, inPage + n), copied);
    copied += n;
    pos += BigInt(n);
    if (copied === totalLength) break;
    page = await files.page(pos);
    if (!page?.header) return undefined;
    const { size, info, remLen } = page.header;
    // As xlogreader.c: the rest of this record was never written and the page starts afresh.
    if ((info & XLP_FIRST_IS_OVERWRITE_CONTRECORD) !== 0) return { restartAt: pos };
    if ((info & XLP_FIRST_IS_CONTRECORD) === 0 || remLen !== totalLength - copied) {
      throw new WalFormatError(pos, `record at ${formatLsn(startLsn)} continues here, but the page says contrecord=${(info & XLP_FIRST_IS_CONTRECORD) !== 0} with ${remLen} bytes remaining (expected ${totalLength - copied})`);
    }
    pos += BigInt(size);
  }
  let decoded: DecodedXLogRecord;
  try {
    decoded = decodeXLogRecord(bytes);
  } catch (err) {
    if (err instanceof XLogRecordDecodeError) throw new WalFormatError(startLsn, err.message);
    throw err;
  }
  const crc = computeRecordCrc(bytes);
  if (crc !== decoded.crc) {
    throw new WalFormatError(startLsn, `incorrect record CRC: computed 0x${crc.toString(16)}, stored 0x${decoded.crc.toString(16)}`);
  }
  let endLsn = BigInt(maxAlign(Number(pos % pageSize))) + pos - (pos % pageSize);
  if (decoded.rmid === RM_XLOG_ID && (decoded.info & XLR_RMGR_INFO_MASK) === XLOG_SWITCH) {
    const segBytes = BigInt(files.segmentBytes);
    endLsn = ((endLsn + segBytes - 1n) / segBytes) * segBytes;
  }
  if (files.endLsn !== undefined && endLsn > files.endLsn) return undefined;
  return { ...decoded, startLsn, endLsn, bytes };
}

/**
 * Reads PostgreSQL 15 WAL records in order from a pg_wal directory or a
 * WalSource, checking page headers and each record's CRC-32C, until valid WAL
 * ends (bytes not held or past endLsn, a zeroed or recycled page, a zero
 * length, an incomplete record). Throws WalFormatError on anything else that
 * is wrong.
 */
export async function* readWalRecords(options: ReadWalOptions): AsyncGenerator<WalRecord> {
  const source = "source" in options ? options.source : await openWalDir(options.walDir, options.timeline);
  if (!source) return;
  const pages = new WalPages(source, options.endLsn);
  const startLsn = options.startLsn ?? source.firstLsn;
  const firstSegno = startLsn / BigInt(source.segmentBytes);
  const first = await pages.segment(firstSegno);
  if (!first) throw new WalFormatError(options.startLsn, source.missing(firstSegno));
  let pos = first.offset === 0 ? await firstRecordOfSegment(pages, firstSegno) : startLsn;
  while (pos !== undefined) {
    const record = await readRecordAt(pages, pos);
    if (!record) return;
    if ("restartAt" in record) {
      pos = record.restartAt;
      continue;
    }
    if (record.startLsn >= startLsn) yield record;
    pos = record.endLsn;
  }
}
