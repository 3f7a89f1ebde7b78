import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { computeRecordCrc, decodeXLogRecord, XLogRecordDecodeError, type DecodedXLogRecord } from "./decode-xlog-record.js";
import {
  DEFAULT_WAL_SEGMENT_BYTES, RM_XLOG_ID, SIZE_OF_XLOG_LONG_PHD, SIZE_OF_XLOG_RECORD, SIZE_OF_XLOG_SHORT_PHD,
  XLOG_BLCKSZ, XLOG_PAGE_MAGIC_PG15, XLOG_SWITCH, XLP_ALL_FLAGS, XLP_FIRST_IS_CONTRECORD, XLP_FIRST_IS_OVERWRITE_CONTRECORD, XLP_LONG_HEADER,
  XLR_RMGR_INFO_MASK, formatLsn, maxAlign,
} from "./wal-constants.js";
import { WalFormatError } from "./wal-errors.js";

/** One WAL record as read from segment files. */
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

export interface ReadWalOptions {
  /** A pg_wal directory (or any directory of segment files). */
  readonly walDir: string;
  /** Yield records starting at or after this LSN (default: from the oldest segment). */
  readonly startLsn?: bigint;
  /** Timeline (default: the highest timeline with a segment in walDir). */
  readonly timeline?: number;
}

const SEGMENT_NAME = /^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$/;

interface PageHeader {
  readonly size: number;
  readonly info: number;
  readonly remLen: number;
}

/** Reads segment files of one timeline, keeping the last two in memory. */
class SegmentFiles {
  private readonly cache = new Map<bigint, Buffer | undefined>();

  constructor(
    private readonly walDir: string,
    private readonly timeline: number,
    readonly segmentBytes: number,
  ) {}

  fileName(segno: bigint): string {
    const perId = 0x100000000n / BigInt(this.segmentBytes);
    const hex = (n: bigint | number): string => n.toString(16).toUpperCase().padStart(8, "0");
    return hex(this.timeline) + hex(segno / perId) + hex(segno % perId);
  }

  async segment(segno: bigint): Promise<Buffer | undefined> {
    if (this.cache.has(segno)) return this.cache.get(segno);
    let data: Buffer | undefined;
    try {
      data = await readFile(path.join(this.walDir, this.fileName(segno)));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
    if (this.cache.size >= 2) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(segno, data);
    return data;
  }

  /** The page at pageLsn, or undefined where valid WAL ends (missing file, zeroed or recycled page). */
  async page(pageLsn: bigint): Promise<{ header: PageHeader; bytes: Buffer } | undefined> {
    const segBytes = BigInt(this.segmentBytes);
    const seg = await this.segment(pageLsn / segBytes);
    const offset = Number(pageLsn % segBytes);
    if (!seg || seg.length < offset + XLOG_BLCKSZ) return undefined;
    const bytes = seg.subarray(offset, offset + XLOG_BLCKSZ);
    const magic = bytes.readUInt16LE(0);
    const info = bytes.readUInt16LE(2);
    const pageAddr = bytes.readBigUInt64LE(8);
    if (magic === 0 && pageAddr === 0n) return undefined;
    if (magic !== XLOG_PAGE_MAGIC_PG15) {
      throw new WalFormatError(pageLsn, `page magic 0x${magic.toString(16)} is not PostgreSQL 15's 0x${XLOG_PAGE_MAGIC_PG15.toString(16)}`);
    }
    if (pageAddr !== pageLsn) return undefined;
    if ((info & ~XLP_ALL_FLAGS) !== 0) throw new WalFormatError(pageLsn, `invalid page info flags 0x${info.toString(16)}`);
    const long = (info & XLP_LONG_HEADER) !== 0;
    if (offset === 0 && !long) throw new WalFormatError(pageLsn, "the first page of a segment lacks its long header");
    if (long && bytes.readUInt32LE(32) !== this.segmentBytes) {
      throw new WalFormatError(pageLsn, `segment size ${bytes.readUInt32LE(32)} in the long header differs from ${this.segmentBytes}`);
    }
    return { header: { size: long ? SIZE_OF_XLOG_LONG_PHD : SIZE_OF_XLOG_SHORT_PHD, info, remLen: bytes.readUInt32LE(16) }, bytes };
  }
}

async function openSegments(options: ReadWalOptions): Promise<{ files: SegmentFiles; firstSegno: bigint } | undefined> {
  const names = (await readdir(options.walDir)).filter((n) => SEGMENT_NAME.test(n)).sort();
  const timeline = options.timeline ?? Math.max(0, ...names.map((n) => parseInt(n.slice(0, 8), 16)));
  const mine = names.filter((n) => parseInt(n.slice(0, 8), 16) === timeline);
  if (mine.length === 0) return undefined;
  const first = await readFile(path.join(options.walDir, mine[0]!));
  const segmentBytes = first.length >= SIZE_OF_XLOG_LONG_PHD ? first.readUInt32LE(32) : DEFAULT_WAL_SEGMENT_BYTES;
  if (segmentBytes < 1024 * 1024 || (segmentBytes & (segmentBytes - 1)) !== 0) {
    throw new WalFormatError(undefined, `segment ${mine[0]} announces segment size ${segmentBytes}; expected a power of two of at least 1 MiB`);
  }
  const files = new SegmentFiles(options.walDir, timeline, segmentBytes);
  const perId = 0x100000000n / BigInt(segmentBytes);
  const segnoOf = (name: string): bigint => BigInt(`0x${name.slice(8, 16)}`) * perId + BigInt(`0x${name.slice(16)}`);
  const firstSegno = options.startLsn === undefined
    ? segnoOf(mine[0]!)
    : options.startLsn / BigInt(segmentBytes);
  return { files, firstSegno };
}

/** The first record boundary of a segment, past a record continued from the previous one. */
async function firstRecordOfSegment(files: SegmentFiles, segno: bigint): Promise<bigint | undefined> {
  let pageLsn = segno * BigInt(files.segmentBytes);
  for (;;) {
    const page = await files.page(pageLsn);
    if (!page) return undefined;
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
async function readRecordAt(files: SegmentFiles, at: bigint): Promise<WalRecord | Restart | undefined> {
  const pageSize = BigInt(XLOG_BLCKSZ);
  let pos = at;
  if (pos % pageSize === 0n) {
    const page = await files.page(pos);
    if (!page) return undefined;
    pos += BigInt(page.header.size);
  }
  const startLsn = pos;
  let page = await files.page(pos - (pos % pageSize));
  if (!page) return undefined;
  const totalLength = page.bytes.readUInt32LE(Number(pos % pageSize));
  if (totalLength === 0) return undefined;
  if (totalLength < SIZE_OF_XLOG_RECORD || totalLength > 0x3fffffff) {
    throw new WalFormatError(startLsn, `invalid record length ${totalLength}`);
  }
  const bytes = new Uint8Array(totalLength);
  let copied = 0;
  for (;;) {
    const inPage = Number(pos % pageSize);
    const n = Math.min(XLOG_BLCKSZ - inPage, totalLength - copied);
    bytes.set(page.bytes.subarray(inPage, inPage + n), copied);
    copied += n;
    pos += BigInt(n);
    if (copied === totalLength) break;
    page = await files.page(pos);
    if (!page) return undefined;
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
  return { ...decoded, startLsn, endLsn, bytes };
}

/**
 * Reads the records of a directory of PostgreSQL 15 WAL segments in order,
 * checking page headers and each record's CRC-32C, until valid WAL ends
 * (a missing segment, a zeroed or recycled page, or a zero length).
 * Throws WalFormatError on anything else that is wrong.
 */
export async function* readWalRecords(options: ReadWalOptions): AsyncGenerator<WalRecord> {
  const opened = await openSegments(options);
  if (!opened) return;
  const { files, firstSegno } = opened;
  if (!(await files.segment(firstSegno))) {
    throw new WalFormatError(options.startLsn, `segment ${files.fileName(firstSegno)} is not in ${options.walDir}`);
  }
  let pos = await firstRecordOfSegment(files, firstSegno);
  while (pos !== undefined) {
    const record = await readRecordAt(files, pos);
    if (!record) return;
    if ("restartAt" in record) {
      pos = record.restartAt;
      continue;
    }
    if (options.startLsn === undefined || record.startLsn >= options.startLsn) yield record;
    pos = record.endLsn;
  }
}
