import { Code, ConnectError } from "@connectrpc/connect";
import type { BufferTag as BufferTagMessage, WalRecord as WalRecordMessage } from "../../gen/pgmesh/walredo/v1/walredo_pb.js";
import { TEMPLATE_WAL_START_LSN } from "../bundle/index.js";
import { computeRecordCrc, decodeXLogRecord, formatLsn, RMGR_NAMES, XLogRecordDecodeError, type BlockRef, type DecodedXLogRecord } from "../wal/index.js";
import {
  encodeRedoRequest, formatBufferTag, MAX_FORK_NUMBER, MAX_REDO_BLOCK_NUMBER, PAGE_SIZE, type BufferTag,
} from "./redo-protocol.js";
import type { CompiledWalRedoOptions } from "./walredo-options.js";
import { checkResourceId } from "../ids/index.js";

/** The fields shared by RedoRequest and RedoPageRequest. */
export interface RedoRequestFields {
  readonly tenantId: string;
  readonly pgMajor: number;
  readonly tag?: BufferTagMessage | undefined;
  readonly baseImage?: Uint8Array | undefined;
  readonly records: readonly WalRecordMessage[];
}

/** A redo request that passed validateRedoRequest, encoded once for every attempt. */
export interface ValidRedoRequest {
  readonly tenantId: string;
  readonly pgMajor: number;
  readonly tag: BufferTag;
  /** Its frames, B [P] A… G, as written to a walredo process. */
  readonly frames: Uint8Array;
}

/** Resource managers whose records change relation pages through their block references (all of their records). */
const PAGE_RMGRS = new Set(["Heap", "Btree", "Hash", "Gin", "Gist", "Sequence", "SPGist", "BRIN", "Generic"]);
const XLR_INFO_MASK = 0x0f;
const XLOG_FPI_FOR_HINT = 0xa0;
const XLOG_FPI = 0xb0;
const XLOG_HEAP_OPMASK = 0x70;
const XLOG_HEAP2_REWRITE = 0x00;
const XLOG_HEAP2_NEW_CID = 0x70;

/** Page header (PageHeaderData) fields the base image is checked by. */
const SIZE_OF_PAGE_HEADER = 24;
const PD_VALID_FLAG_BITS = 0x0007;
const PG_PAGE_LAYOUT_VERSION = 4;

function invalid(message: string): ConnectError {
  return new ConnectError(message, Code.InvalidArgument);
}

/** INVALID_ARGUMENT unless the service serves this Postgres major. */
export function checkPgMajor(pgMajor: number, options: CompiledWalRedoOptions): void {
  if (!options.pgMajors.includes(pgMajor)) {
    throw invalid(`pg_major ${pgMajor} is not served here; supported: ${options.pgMajors.join(", ")}`);
  }
}

/** The walredo module applies only records that change relation pages (as its rmgr_allowed). */
function changesPages(record: DecodedXLogRecord): boolean {
  const rmgr = RMGR_NAMES[record.rmid];
  if (rmgr === "XLOG") return [XLOG_FPI, XLOG_FPI_FOR_HINT].includes(record.info & ~XLR_INFO_MASK);
  if (rmgr === "Heap2") return ![XLOG_HEAP2_REWRITE, XLOG_HEAP2_NEW_CID].includes(record.info & XLOG_HEAP_OPMASK);
  return rmgr !== undefined && PAGE_RMGRS.has(rmgr);
}

function isTarget(block: BlockRef, tag: BufferTag): boolean {
  return block.rel.relNumber === tag.relNode && block.rel.dbOid === tag.dbNode && block.rel.spcOid === tag.spcNode
    && block.fork === tag.forkNumber && block.blockNumber === tag.blockNumber;
}

/**
 * A base image is a page as Postgres writes it (the checks of its
 * PageIsVerified, less the checksum): all zeroes (a new page), or a header
 * whose pointers lie in order within the page, of page size 8192 and layout 4.
 */
function checkBaseImage(image: Uint8Array, where: string): void {
  if (image.length !== PAGE_SIZE) throw invalid(`base_image of ${where} has ${image.length} bytes; a page has exactly ${PAGE_SIZE}`);
  const view = new DataView(image.buffer, image.byteOffset, image.byteLength);
  const [flags, lower, upper, special, sizeVersion] = [10, 12, 14, 16, 18].map((offset) => view.getUint16(offset, true)) as [number, number, number, number, number];
  if (upper === 0) {
    if (image.some((b) => b !== 0)) throw invalid(`base_image of ${where} is neither a new (all-zero) page nor has a page header (pd_upper is 0); send the page as Postgres wrote it`);
    return;
  }
  const problem = (sizeVersion & 0xff00) !== PAGE_SIZE || (sizeVersion & 0xff) !== PG_PAGE_LAYOUT_VERSION
    ? `page size and layout 0x${sizeVersion.toString(16)} are not ${PAGE_SIZE} and ${PG_PAGE_LAYOUT_VERSION}`
    : (flags & ~PD_VALID_FLAG_BITS) !== 0
      ? `pd_flags 0x${flags.toString(16)} has unknown bits`
      : !(SIZE_OF_PAGE_HEADER <= lower && lower <= upper && upper <= special && special <= PAGE_SIZE && special % 8 === 0)
        ? `pd_lower ${lower}, pd_upper ${upper}, pd_special ${special} are not in order within the page`
        : undefined;
  if (problem) throw invalid(`base_image of ${where} is not a valid page: ${problem}; send the page as Postgres wrote it`);
}

/**
 * What the walredo module checks of one record before redo, checked here so
 * that it never costs a process. Returns the record's reference to the block.
 */
function checkRecord(r: WalRecordMessage, i: number, tag: BufferTag, where: string, options: CompiledWalRedoOptions): BlockRef {
  if (r.record.length > options.maxRecordBytes) {
    throw invalid(`records[${i}] has ${r.record.length} bytes; the limit is ${options.maxRecordBytes} (maxRecordBytes)`);
  }
  let record: DecodedXLogRecord;
  try {
    record = decodeXLogRecord(r.record);
  } catch (err) {
    if (err instanceof XLogRecordDecodeError) throw invalid(`records[${i}] (end_lsn ${r.endLsn}) is not a valid XLogRecord: ${err.message}`);
    throw err;
  }
  const name = `records[${i}] (end_lsn ${r.endLsn}, rmgr ${RMGR_NAMES[record.rmid] ?? record.rmid})`;
  if (RMGR_NAMES[record.rmid] === undefined) {
    throw invalid(`records[${i}] has resource manager id ${record.rmid}; known: 0..${RMGR_NAMES.length - 1} (${RMGR_NAMES.join(", ")})`);
  }
  if (!changesPages(record)) {
    throw invalid(`${name} with info 0x${record.info.toString(16)} does not change relation pages, so it cannot rebuild one; send only the records of the block`);
  }
  const crc = computeRecordCrc(r.record);
  if (crc !== record.crc) {
    throw invalid(`${name} fails its CRC check (stored 0x${record.crc.toString(16)}, computed 0x${crc.toString(16)}); the record is corrupt`);
  }
  record.blocks.forEach((b, j) => {
    const block = `${name}: block reference ${b.blockId}`;
    if (b.fork > MAX_FORK_NUMBER) throw invalid(`${block} has fork number ${b.fork}; forks are 0..${MAX_FORK_NUMBER}`);
    if (b.blockNumber > MAX_REDO_BLOCK_NUMBER) throw invalid(`${block} has block number ${b.blockNumber}, beyond MaxBlockNumber`);
    if (record.blocks.slice(0, j).some((o) => o.rel.spcOid === b.rel.spcOid && o.rel.dbOid === b.rel.dbOid && o.rel.relNumber === b.rel.relNumber
      && o.fork === b.fork && o.blockNumber === b.blockNumber)) {
      throw invalid(`${block} names a block an earlier reference of the record names too`);
    }
  });
  const target = record.blocks.find((b) => isTarget(b, tag));
  if (!target) throw invalid(`${name} does not reference ${where}; send only the records of that block`);
  return target;
}

/**
 * Checks a redo request before it reaches a process, everything the walredo
 * module would otherwise die on: tenant id, pg major, a tag in range, a base
 * image that is a page, 1..maxRecordsPerRequest records with end LSNs
 * strictly increasing and below the scratch cluster's WAL position, and each
 * record well-formed (xl_tot_len equal to its bytes, headers adding up, image
 * bounds), of a resource manager that changes pages, with a matching CRC,
 * block references in range and distinct, one of them the requested block;
 * without a base image the first record must initialise the page (full-page
 * image or WILL_INIT). Then encodes it once.
 * Throws ConnectError INVALID_ARGUMENT naming the field.
 */
export function validateRedoRequest(fields: RedoRequestFields, options: CompiledWalRedoOptions): ValidRedoRequest {
  checkResourceId("tenant_id", fields.tenantId);
  checkPgMajor(fields.pgMajor, options);
  if (!fields.tag) throw invalid("tag is missing; name the block to reconstruct (spc_oid, db_oid, rel_number, fork, block_number)");
  const fork = fields.tag.fork as number;
  if (!Number.isInteger(fork) || fork < 0 || fork > MAX_FORK_NUMBER) throw invalid(`tag.fork ${fork} is not a fork number (0..${MAX_FORK_NUMBER})`);
  if (fields.tag.blockNumber > MAX_REDO_BLOCK_NUMBER) throw invalid(`tag.block_number ${fields.tag.blockNumber} is beyond MaxBlockNumber`);
  const tag: BufferTag = {
    forkNumber: fork,
    spcNode: fields.tag.spcOid,
    dbNode: fields.tag.dbOid,
    relNode: fields.tag.relNumber,
    blockNumber: fields.tag.blockNumber,
  };
  const where = formatBufferTag(tag);
  if (fields.baseImage !== undefined) checkBaseImage(fields.baseImage, where);
  if (fields.records.length === 0) throw invalid(`no records for ${where}; send at least one`);
  if (fields.records.length > options.maxRecordsPerRequest) {
    throw invalid(`${fields.records.length} records for ${where}; the limit is ${options.maxRecordsPerRequest} per request: split the request`);
  }
  let previousLsn = 0n;
  fields.records.forEach((r, i) => {
    if (r.endLsn <= previousLsn) {
      throw invalid(`records[${i}].end_lsn ${r.endLsn} is not after the previous record's ${previousLsn}; send records in LSN order`);
    }
    if (r.endLsn >= TEMPLATE_WAL_START_LSN) {
      throw invalid(`records[${i}].end_lsn ${formatLsn(r.endLsn)} is not below ${formatLsn(TEMPLATE_WAL_START_LSN)}, the highest LSN walredo replays`);
    }
    previousLsn = r.endLsn;
  });
  fields.records.forEach((r, i) => {
    const target = checkRecord(r, i, tag, where, options);
    if (i === 0 && fields.baseImage === undefined && !target.applyImage && !target.willInit) {
      throw invalid(`no base_image for ${where}, and records[0] neither carries a full-page image nor initialises the page; send the base image`);
    }
  });
  const request = {
    tag,
    ...(fields.baseImage !== undefined ? { baseImage: fields.baseImage } : {}),
    records: fields.records,
  };
  return { tenantId: fields.tenantId, pgMajor: fields.pgMajor, tag, frames: encodeRedoRequest(request) };
}
