/**
 * Just enough WAL reading to prove the walredo module: pg_waldump finds the
 * records and their block references; the raw record bytes are then cut out
 * of the segment files, page headers stripped.
 */
import { open } from "node:fs/promises";
import path from "node:path";
import { execa } from "execa";
import type { BufferTag, WalRecord } from "../src/walredo/redo-protocol.js";

const WAL_PAGE = 8192;
const SHORT_PAGE_HEADER = 24;
const LONG_PAGE_HEADER = 40;
const FORKS: Record<string, number> = { main: 0, fsm: 1, vm: 2, init: 3 };

export interface DumpedRecord {
  readonly startLsn: bigint;
  readonly totalLength: number;
  readonly rmgr: string;
  readonly desc: string;
  readonly blocks: readonly BufferTag[];
  /** The record carries a full-page image of some block. */
  readonly fullPageImage: boolean;
}

export function parseLsn(text: string): bigint {
  const [hi, lo] = text.split("/");
  return (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
}

export function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

/** Records from startLsn (inclusive) to endLsn (exclusive), as pg_waldump lists them. */
export async function dumpRecords(binDir: string, walDir: string, startLsn: bigint, endLsn: bigint): Promise<DumpedRecord[]> {
  const { stdout } = await execa(path.join(binDir, "pg_waldump"), ["-p", walDir, "-s", formatLsn(startLsn), "-e", formatLsn(endLsn)]);
  const records: DumpedRecord[] = [];
  for (const line of stdout.split("\n")) {
    const head = /^rmgr: (\S+)\s+len \(rec\/tot\):\s*\d+\/\s*(\d+), tx:\s*\d+, lsn: ([0-9A-F]+\/[0-9A-F]+), prev [0-9A-F/]+, desc: (.*)$/.exec(line);
    if (!head) continue;
    const blocks: BufferTag[] = [];
    for (const ref of head[4]!.matchAll(/blkref #\d+: rel (\d+)\/(\d+)\/(\d+)(?: fork (\w+))? blk (\d+)/g)) {
      blocks.push({
        spcNode: Number(ref[1]), dbNode: Number(ref[2]), relNode: Number(ref[3]),
        forkNumber: FORKS[ref[4] ?? "main"]!, blockNumber: Number(ref[5]),
      });
    }
    records.push({
      rmgr: head[1]!, totalLength: Number(head[2]), startLsn: parseLsn(head[3]!), desc: head[4]!, blocks,
      fullPageImage: / FPW/.test(head[4]!),
    });
  }
  return records;
}

function segmentFileName(lsn: bigint, segmentSize: number): string {
  const segno = lsn / BigInt(segmentSize);
  const perId = 0x100000000n / BigInt(segmentSize);
  const hex = (n: bigint) => n.toString(16).toUpperCase().padStart(8, "0");
  return `00000001${hex(segno / perId)}${hex(segno % perId)}`;
}

/** The record's bytes without the page headers it spans, and its end LSN (what redo stamps on pages). */
export async function readRecord(walDir: string, record: DumpedRecord, segmentSize = 16 * 1024 * 1024): Promise<WalRecord> {
  const bytes = new Uint8Array(record.totalLength);
  let pos = record.startLsn;
  let filled = 0;
  while (filled < record.totalLength) {
    const inPage = Number(pos % BigInt(WAL_PAGE));
    if (inPage === 0) pos += BigInt(pos % BigInt(segmentSize) === 0n ? LONG_PAGE_HEADER : SHORT_PAGE_HEADER);
    const n = Math.min(record.totalLength - filled, WAL_PAGE - Number(pos % BigInt(WAL_PAGE)));
    const file = await open(path.join(walDir, segmentFileName(pos, segmentSize)), "r");
    try {
      await file.read(bytes, filled, n, Number(pos % BigInt(segmentSize)));
    } finally {
      await file.close();
    }
    filled += n;
    pos += BigInt(n);
  }
  return { record: bytes, endLsn: (pos + 7n) & ~7n };
}

export function sameTag(a: BufferTag, b: BufferTag): boolean {
  return a.spcNode === b.spcNode && a.dbNode === b.dbNode && a.relNode === b.relNode
    && a.forkNumber === b.forkNumber && a.blockNumber === b.blockNumber;
}

/** The records (bytes and end LSNs) that touch one block, in WAL order. */
export async function recordsFor(walDir: string, records: readonly DumpedRecord[], tag: BufferTag): Promise<WalRecord[]> {
  const touching = records.filter((r) => r.blocks.some((b) => sameTag(b, tag)));
  return Promise.all(touching.map((r) => readRecord(walDir, r)));
}

/** Block `blockNumber` of a relation file (segment 0). */
export async function readPage(file: string, blockNumber: number): Promise<Uint8Array> {
  const page = new Uint8Array(8192);
  const handle = await open(file, "r");
  try {
    const { bytesRead } = await handle.read(page, 0, 8192, blockNumber * 8192);
    if (bytesRead !== 8192) throw new Error(`${file} has no block ${blockNumber}`);
  } finally {
    await handle.close();
  }
  return page;
}

/** The LSN stamped on a page (pd_lsn: two little-endian uint32, high word first). */
export function pageLsn(page: Uint8Array): bigint {
  const view = new DataView(page.buffer, page.byteOffset, 8);
  return (BigInt(view.getUint32(0, true)) << 32n) | BigInt(view.getUint32(4, true));
}

/**
 * A heap page without the bits Postgres changes without WAL (as its own
 * heap_mask does for wal_consistency_checking): pd_prune_xid, the page-level
 * hint flags, and the tuples' commit hint bits.
 */
export function maskHeapHints(page: Uint8Array): Buffer {
  const masked = Buffer.from(page);
  masked.writeUInt32LE(0, 20); // pd_prune_xid
  masked.writeUInt16LE(masked.readUInt16LE(10) & ~0x0007, 10); // PD_HAS_FREE_LINES, PD_PAGE_FULL, PD_ALL_VISIBLE
  const lower = masked.readUInt16LE(12);
  for (let item = 24; item < lower; item += 4) {
    const lp = masked.readUInt32LE(item);
    const [offset, flags] = [lp & 0x7fff, (lp >>> 15) & 0x3];
    if (flags !== 1) continue; // LP_NORMAL only
    const infomask = masked.readUInt16LE(offset + 20);
    masked.writeUInt16LE(infomask & ~0x0f00, offset + 20); // HEAP_XMIN_COMMITTED|INVALID, HEAP_XMAX_COMMITTED|INVALID
  }
  return masked;
}

const CRC32C_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32c(crc: number, bytes: Uint8Array): number {
  for (const b of bytes) crc = CRC32C_TABLE[(crc ^ b) & 0xff]! ^ (crc >>> 8);
  return crc;
}

/**
 * A hand-made WAL record with a valid CRC: one block reference to `tag`
 * (optionally with block data) and optional main data. For tests that need
 * a record Postgres's own redo rejects.
 */
export function craftRecord(rmid: number, info: number, tag: BufferTag, blockData: Uint8Array, mainData: Uint8Array): Uint8Array {
  const blockHeader = 1 + 1 + 2 + 12 + 4;
  const mainHeader = mainData.length > 0 ? 2 : 0;
  const total = 24 + blockHeader + mainHeader + blockData.length + mainData.length;
  const bytes = new Uint8Array(total);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, total, true); // xl_tot_len
  view.setUint8(16, info);
  view.setUint8(17, rmid);
  let at = 24;
  bytes[at++] = 0; // block id 0
  bytes[at++] = tag.forkNumber | (blockData.length > 0 ? 0x20 : 0); // BKPBLOCK_HAS_DATA
  view.setUint16(at, blockData.length, true); at += 2;
  for (const v of [tag.spcNode, tag.dbNode, tag.relNode, tag.blockNumber]) { view.setUint32(at, v, true); at += 4; }
  if (mainHeader) { bytes[at++] = 255; bytes[at++] = mainData.length; } // XLR_BLOCK_ID_DATA_SHORT
  bytes.set(blockData, at); at += blockData.length;
  bytes.set(mainData, at);
  const crc = crc32c(crc32c(0xffffffff, bytes.subarray(24)), bytes.subarray(0, 20)) ^ 0xffffffff;
  view.setUint32(20, crc >>> 0, true);
  return bytes;
}
