import { crc32cFinish, crc32cUpdate, CRC32C_INIT } from "./crc32c.js";
import {
  BKPBLOCK_FORK_MASK, BKPBLOCK_HAS_DATA, BKPBLOCK_HAS_IMAGE, BKPBLOCK_SAME_REL, BKPBLOCK_WILL_INIT,
  BKPIMAGE_APPLY, BKPIMAGE_COMPRESSED_MASK, BKPIMAGE_HAS_HOLE, BLCKSZ, SIZE_OF_XLOG_RECORD,
  XLOG_RECORD_CRC_OFFSET, XLR_BLOCK_ID_DATA_LONG, XLR_BLOCK_ID_DATA_SHORT, XLR_BLOCK_ID_ORIGIN,
  XLR_BLOCK_ID_TOPLEVEL_XID, XLR_MAX_BLOCK_ID,
} from "./wal-constants.js";

/** PostgreSQL's RelFileNode. */
export interface RelFileNode {
  readonly spcOid: number;
  readonly dbOid: number;
  readonly relNumber: number;
}

/** One block reference of a record (XLogRecordBlockHeader and what follows it). */
export interface BlockRef {
  readonly blockId: number;
  readonly rel: RelFileNode;
  /** ForkNumber: 0 main, 1 fsm, 2 vm, 3 init. */
  readonly fork: number;
  readonly blockNumber: number;
  readonly hasImage: boolean;
  /** The image is restored by redo (BKPIMAGE_APPLY), not only kept for consistency checks. */
  readonly applyImage: boolean;
  readonly willInit: boolean;
  readonly hasData: boolean;
  readonly dataLength: number;
  /** Bytes of the (possibly compressed) image in the record; 0 without an image. */
  readonly imageLength: number;
  readonly holeOffset: number;
  readonly holeLength: number;
  readonly imageCompressed: boolean;
}

/** The decoded header part of one XLogRecord. */
export interface DecodedXLogRecord {
  readonly totalLength: number;
  readonly xid: number;
  readonly prevLsn: bigint;
  /** xl_info, including the XLR_INFO_MASK bits. */
  readonly info: number;
  readonly rmid: number;
  readonly crc: number;
  readonly blocks: readonly BlockRef[];
  readonly mainDataLength: number;
  readonly originId: number | undefined;
  readonly toplevelXid: number | undefined;
}

/** Why a record cannot be decoded; `offset` is within the record. */
export class XLogRecordDecodeError extends Error {
  constructor(readonly offset: number, detail: string) {
    super(detail);
    this.name = "XLogRecordDecodeError";
  }
}

/** Throws unless n more bytes follow pos (a plain function: a closure over pos would slow every access to it). */
function need(pos: number, n: number, totalLength: number, what: string, blockId = -1): void {
  if (pos + n > totalLength) {
    const where = blockId >= 0 ? `block ${blockId}'s ${what}` : what;
    throw new XLogRecordDecodeError(pos, `record ends inside ${where} (needs ${n} bytes at offset ${pos} of ${totalLength})`);
  }
}

/**
 * Decodes and checks the headers of a raw XLogRecord (page headers stripped),
 * with the checks of PostgreSQL's DecodeXLogRecord: block ids in order,
 * data/image length consistency, and headers plus payload adding up to
 * xl_tot_len, which must equal `record.length`.
 */
export function decodeXLogRecord(record: Uint8Array): DecodedXLogRecord {
  if (record.length < SIZE_OF_XLOG_RECORD) {
    throw new XLogRecordDecodeError(0, `record is ${record.length} bytes; an XLogRecord header alone is ${SIZE_OF_XLOG_RECORD}`);
  }
  const view = new DataView(record.buffer, record.byteOffset, record.byteLength);
  const totalLength = view.getUint32(0, true);
  if (totalLength !== record.length) {
    throw new XLogRecordDecodeError(0, `xl_tot_len is ${totalLength} but the record has ${record.length} bytes`);
  }
  let pos = SIZE_OF_XLOG_RECORD;
  const blocks: BlockRef[] = [];
  let dataTotal = 0;
  let mainDataLength = 0;
  let originId: number | undefined;
  let toplevelXid: number | undefined;
  let lastRel: RelFileNode | undefined;
  let maxBlockId = -1;
  while (totalLength - pos > dataTotal) {
    need(pos, 1, totalLength, "a block id");
    const blockId = record[pos]!;
    pos += 1;
    if (blockId === XLR_BLOCK_ID_DATA_SHORT) {
      need(pos, 1, totalLength, "the main data length");
      mainDataLength = record[pos]!;
      pos += 1;
      dataTotal += mainDataLength;
      break;
    }
    if (blockId === XLR_BLOCK_ID_DATA_LONG) {
      need(pos, 4, totalLength, "the main data length");
      mainDataLength = view.getUint32(pos, true);
      pos += 4;
      dataTotal += mainDataLength;
      break;
    }
    if (blockId === XLR_BLOCK_ID_ORIGIN) {
      need(pos, 2, totalLength, "the replication origin");
      originId = view.getUint16(pos, true);
      pos += 2;
      continue;
    }
    if (blockId === XLR_BLOCK_ID_TOPLEVEL_XID) {
      need(pos, 4, totalLength, "the top-level xid");
      toplevelXid = view.getUint32(pos, true);
      pos += 4;
      continue;
    }
    if (blockId > XLR_MAX_BLOCK_ID) throw new XLogRecordDecodeError(pos - 1, `invalid block id ${blockId}`);
    if (blockId <= maxBlockId) throw new XLogRecordDecodeError(pos - 1, `block id ${blockId} out of order (after ${maxBlockId})`);
    maxBlockId = blockId;
    need(pos, 3, totalLength, "header", blockId);
    const forkFlags = record[pos]!;
    const dataLength = view.getUint16(pos + 1, true);
    pos += 3;
    const hasData = (forkFlags & BKPBLOCK_HAS_DATA) !== 0;
    if (hasData && dataLength === 0) throw new XLogRecordDecodeError(pos, `block ${blockId} has BKPBLOCK_HAS_DATA but no data`);
    if (!hasData && dataLength !== 0) throw new XLogRecordDecodeError(pos, `block ${blockId} has ${dataLength} data bytes without BKPBLOCK_HAS_DATA`);
    dataTotal += dataLength;
    const hasImage = (forkFlags & BKPBLOCK_HAS_IMAGE) !== 0;
    let imageLength = 0;
    let holeOffset = 0;
    let holeLength = 0;
    let imageInfo = 0;
    if (hasImage) {
      need(pos, 5, totalLength, "image header", blockId);
      imageLength = view.getUint16(pos, true);
      holeOffset = view.getUint16(pos + 2, true);
      imageInfo = record[pos + 4]!;
      pos += 5;
      const compressed = (imageInfo & BKPIMAGE_COMPRESSED_MASK) !== 0;
      const hasHole = (imageInfo & BKPIMAGE_HAS_HOLE) !== 0;
      if (hasHole && compressed) {
        need(pos, 2, totalLength, "hole length", blockId);
        holeLength = view.getUint16(pos, true);
        pos += 2;
      } else if (hasHole) {
        holeLength = BLCKSZ - imageLength;
      }
      dataTotal += imageLength;
      if (hasHole && (holeOffset === 0 || holeLength === 0 || imageLength === BLCKSZ)) {
        throw new XLogRecordDecodeError(pos, `block ${blockId}: inconsistent hole (offset ${holeOffset}, length ${holeLength}, image ${imageLength})`);
      }
      if (!hasHole && (holeOffset !== 0 || holeLength !== 0)) {
        throw new XLogRecordDecodeError(pos, `block ${blockId}: hole offset ${holeOffset} without BKPIMAGE_HAS_HOLE`);
      }
      if (compressed ? imageLength === BLCKSZ : !hasHole && imageLength !== BLCKSZ) {
        throw new XLogRecordDecodeError(pos, `block ${blockId}: image length ${imageLength} is impossible for image flags 0x${imageInfo.toString(16)}`);
      }
      // Postgres's decoder lets these through (an uncompressed image's hole length wraps around); restoring the image would not.
      if (imageLength > BLCKSZ || holeLength < 0 || holeOffset + holeLength > BLCKSZ) {
        throw new XLogRecordDecodeError(pos, `block ${blockId}: an image of ${imageLength} bytes with a hole of ${holeLength} bytes at ${holeOffset} does not fit a ${BLCKSZ}-byte page`);
      }
    }
    let rel: RelFileNode;
    if ((forkFlags & BKPBLOCK_SAME_REL) === 0) {
      need(pos, 12, totalLength, "RelFileNode", blockId);
      rel = { spcOid: view.getUint32(pos, true), dbOid: view.getUint32(pos + 4, true), relNumber: view.getUint32(pos + 8, true) };
      pos += 12;
    } else {
      if (!lastRel) throw new XLogRecordDecodeError(pos, `block ${blockId} has BKPBLOCK_SAME_REL but no previous relation`);
      rel = lastRel;
    }
    lastRel = rel;
    need(pos, 4, totalLength, "block number", blockId);
    const blockNumber = view.getUint32(pos, true);
    pos += 4;
    blocks.push({
      blockId,
      rel,
      fork: forkFlags & BKPBLOCK_FORK_MASK,
      blockNumber,
      hasImage,
      applyImage: hasImage && (imageInfo & BKPIMAGE_APPLY) !== 0,
      willInit: (forkFlags & BKPBLOCK_WILL_INIT) !== 0,
      hasData,
      dataLength,
      imageLength,
      holeOffset,
      holeLength,
      imageCompressed: (imageInfo & BKPIMAGE_COMPRESSED_MASK) !== 0,
    });
  }
  if (totalLength - pos !== dataTotal) {
    throw new XLogRecordDecodeError(pos, `headers announce ${dataTotal} payload bytes but ${totalLength - pos} follow them`);
  }
  return {
    totalLength,
    xid: view.getUint32(4, true),
    prevLsn: view.getBigUint64(8, true),
    info: record[16]!,
    rmid: record[17]!,
    crc: view.getUint32(XLOG_RECORD_CRC_OFFSET, true),
    blocks,
    mainDataLength,
    originId,
    toplevelXid,
  };
}

/** The CRC PostgreSQL computes for a record: payload first, then the header up to xl_crc. */
export function computeRecordCrc(record: Uint8Array): number {
  let crc = crc32cUpdate(CRC32C_INIT, record.subarray(SIZE_OF_XLOG_RECORD));
  crc = crc32cUpdate(crc, record.subarray(0, XLOG_RECORD_CRC_OFFSET));
  return crc32cFinish(crc);
}
