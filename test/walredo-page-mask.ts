/**
 * The page masks PostgreSQL 15 itself applies before comparing a replayed
 * page with the primary's (wal_consistency_checking): bufmask.c's
 * mask_page_hint_bits / mask_unused_space / mask_lp_flags /
 * mask_page_content, and the rmgr masks heap_mask, btree_mask, gin_mask.
 * The page LSN is kept (redo must stamp the record's end LSN); only the
 * checksum field is masked, as mask_page_lsn_and_checksum does.
 */
import type { PageKind } from "./walredo-workload.js";

const SIZE_OF_PAGE_HEADER = 24;
const PD_HAS_FREE_LINES = 0x1;
const PD_PAGE_FULL = 0x2;
const PD_ALL_VISIBLE = 0x4;
const LP_UNUSED = 0;
const LP_NORMAL = 1;
const HEAP_XACT_MASK = 0xfff0;
const HEAP_XMIN_FROZEN = 0x0300;
const HEAP_XMAX_COMMITTED = 0x0400;
const HEAP_XMAX_INVALID = 0x0800;
const SPEC_TOKEN_OFFSET_NUMBER = 0xfffe;
const BTP_LEAF = 1 << 0;
const BTP_SPLIT_END = 1 << 5;
const BTP_HAS_GARBAGE = 1 << 6;
const GIN_DELETED = 1 << 2;

interface ItemId {
  readonly off: number;
  readonly flags: number;
  readonly len: number;
}

function itemId(page: Buffer, offnum: number): ItemId {
  const word = page.readUInt32LE(SIZE_OF_PAGE_HEADER + (offnum - 1) * 4);
  return { off: word & 0x7fff, flags: (word >>> 15) & 0x3, len: word >>> 17 };
}

function setItemFlags(page: Buffer, offnum: number, flags: number): void {
  const at = SIZE_OF_PAGE_HEADER + (offnum - 1) * 4;
  const word = page.readUInt32LE(at);
  page.writeUInt32LE(((word & ~(0x3 << 15)) | (flags << 15)) >>> 0, at);
}

function maxOffsetNumber(page: Buffer): number {
  const lower = page.readUInt16LE(12);
  return lower <= SIZE_OF_PAGE_HEADER ? 0 : (lower - SIZE_OF_PAGE_HEADER) >> 2;
}

function maskChecksum(page: Buffer): void {
  page.writeUInt16LE(0, 8);
}

function maskPageHintBits(page: Buffer): void {
  page.writeUInt32LE(0, 20); // pd_prune_xid
  page.writeUInt16LE(page.readUInt16LE(10) & ~(PD_PAGE_FULL | PD_HAS_FREE_LINES | PD_ALL_VISIBLE), 10);
}

function maskUnusedSpace(page: Buffer): void {
  const lower = page.readUInt16LE(12);
  const upper = page.readUInt16LE(14);
  const special = page.readUInt16LE(16);
  if (lower > upper || special < upper || lower < SIZE_OF_PAGE_HEADER || special > page.length) {
    throw new Error(`invalid page: pd_lower ${lower}, pd_upper ${upper}, pd_special ${special}`);
  }
  page.fill(0, lower, upper);
}

function maskLpFlags(page: Buffer): void {
  for (let off = 1; off <= maxOffsetNumber(page); off++) {
    if (itemId(page, off).flags !== LP_UNUSED) setItemFlags(page, off, LP_UNUSED);
  }
}

function maskPageContent(page: Buffer): void {
  page.fill(0, SIZE_OF_PAGE_HEADER);
  page.writeUInt16LE(0, 12);
  page.writeUInt16LE(0, 14);
}

function heapMask(page: Buffer, blockNumber: number): void {
  maskChecksum(page);
  maskPageHintBits(page);
  maskUnusedSpace(page);
  for (let off = 1; off <= maxOffsetNumber(page); off++) {
    const iid = itemId(page, off);
    if (iid.flags === LP_NORMAL) {
      const t = iid.off;
      let infomask = page.readUInt16LE(t + 20);
      if ((infomask & HEAP_XMIN_FROZEN) !== HEAP_XMIN_FROZEN) infomask &= ~HEAP_XACT_MASK;
      else infomask &= ~(HEAP_XMAX_INVALID | HEAP_XMAX_COMMITTED);
      page.writeUInt16LE(infomask & 0xffff, t + 20);
      page.writeUInt32LE(0, t + 8); // t_cid
      if (page.readUInt16LE(t + 16) === SPEC_TOKEN_OFFSET_NUMBER) {
        page.writeUInt16LE(blockNumber >>> 16, t + 12);
        page.writeUInt16LE(blockNumber & 0xffff, t + 14);
        page.writeUInt16LE(off, t + 16);
      }
    }
    if (iid.len !== 0) {
      const padded = (iid.len + 7) & ~7;
      page.fill(0, iid.off + iid.len, iid.off + padded);
    }
  }
}

function btreeMask(page: Buffer): void {
  maskChecksum(page);
  maskPageHintBits(page);
  maskUnusedSpace(page);
  const special = page.readUInt16LE(16);
  const flags = page.readUInt16LE(special + 12);
  if (flags & BTP_LEAF) maskLpFlags(page);
  page.writeUInt16LE(flags & ~(BTP_HAS_GARBAGE | BTP_SPLIT_END), special + 12);
  page.writeUInt16LE(0, special + 14); // btpo_cycleid
}

function ginMask(page: Buffer): void {
  maskChecksum(page);
  maskPageHintBits(page);
  const special = page.readUInt16LE(16);
  const flags = page.readUInt16LE(special + 6);
  if (flags & GIN_DELETED) maskPageContent(page);
  else if (page.readUInt16LE(12) > SIZE_OF_PAGE_HEADER) maskUnusedSpace(page);
}

/** A masked copy of an 8192-byte page of the given kind. */
export function maskPage(kind: PageKind, page: Uint8Array, blockNumber: number): Buffer {
  const copy = Buffer.from(page);
  if (kind === "heap") heapMask(copy, blockNumber);
  else if (kind === "btree") btreeMask(copy);
  else ginMask(copy);
  return copy;
}
