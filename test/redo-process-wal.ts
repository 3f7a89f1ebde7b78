/**
 * Just enough WAL reading to prove the walredo module: pg_waldump finds the
 * records and their block references; the raw record bytes are then cut out
 * of the segment files, page headers stripped.
 */
import { open } from "node:fs/promises";
import path from "node:path";
import { execa } from "execa";
import { computeRecordCrc } from "../src/wal/index.js";
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

/** One block reference of a crafted record. */
export interface CraftedBlock {
  readonly tag: BufferTag;
  readonly data?: Uint8Array;
  /** A full-page image: its bytes (the page without the hole) and where the hole is; flags BKPIMAGE_HAS_HOLE and BKPIMAGE_APPLY are set. */
  readonly image?: { readonly bytes: Uint8Array; readonly holeOffset: number };
}

/**
 * A hand-made WAL record with a valid CRC: block references numbered from 0
 * (each with its own relation), then optional main data. For tests that need
 * a record Postgres's own redo, or validation, rejects.
 */
export function craftBlocksRecord(rmid: number, info: number, blocks: readonly CraftedBlock[], mainData: Uint8Array): Uint8Array {
  const headers = blocks.reduce((n, b) => n + 1 + 1 + 2 + (b.image ? 5 : 0) + 12 + 4, 0);
  const payload = blocks.reduce((n, b) => n + (b.image?.bytes.length ?? 0) + (b.data?.length ?? 0), 0);
  const mainHeader = mainData.length > 0 ? 2 : 0;
  const total = 24 + headers + mainHeader + payload + mainData.length;
  const bytes = new Uint8Array(total);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, total, true); // xl_tot_len
  view.setUint8(16, info);
  view.setUint8(17, rmid);
  let at = 24;
  blocks.forEach((b, id) => {
    const data = b.data ?? new Uint8Array(0);
    bytes[at++] = id;
    bytes[at++] = b.tag.forkNumber | (data.length > 0 ? 0x20 : 0) | (b.image ? 0x10 : 0); // BKPBLOCK_HAS_DATA, BKPBLOCK_HAS_IMAGE
    view.setUint16(at, data.length, true); at += 2;
    if (b.image) {
      view.setUint16(at, b.image.bytes.length, true);
      view.setUint16(at + 2, b.image.holeOffset, true);
      bytes[at + 4] = (b.image.bytes.length < 8192 ? 0x01 : 0) | 0x02; // BKPIMAGE_HAS_HOLE, BKPIMAGE_APPLY
      at += 5;
    }
    for (const v of [b.tag.spcNode, b.tag.dbNode, b.tag.relNode, b.tag.blockNumber]) { view.setUint32(at, v, true); at += 4; }
  });
  if (mainHeader) { bytes[at++] = 255; bytes[at++] = mainData.length; } // XLR_BLOCK_ID_DATA_SHORT
  for (const b of blocks) {
    if (b.image) { bytes.set(b.image.bytes, at); at += b.image.bytes.length; }
    if (b.data) { bytes.set(b.data, at); at += b.data.length; }
  }
  bytes.set(mainData, at);
  view.setUint32(20, computeRecordCrc(bytes), true);
  return bytes;
}

/** craftBlocksRecord with one block reference to `tag`, optionally with block data. */
export function craftRecord(rmid: number, info: number, tag: BufferTag, blockData: Uint8Array, mainData: Uint8Array): Uint8Array {
  return craftBlocksRecord(rmid, info, [{ tag, data: blockData }], mainData);
}
