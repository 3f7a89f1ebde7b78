import { Code, ConnectError } from "@connectrpc/connect";
import type { BufferTag as BufferTagMessage, WalRecord as WalRecordMessage } from "../../gen/pgmesh/walredo/v1/walredo_pb.js";
import { decodeXLogRecord, RM_MAX_BUILTIN_ID, RMGR_NAMES, XLogRecordDecodeError, type DecodedXLogRecord } from "../wal/index.js";
import { formatBufferTag, PAGE_SIZE, type BufferTag, type RedoRequest } from "./redo-protocol.js";
import type { CompiledWalRedoOptions } from "./walredo-options.js";
import { quoteInput } from "../errors/index.js";

/** The fields shared by RedoRequest and RedoPageRequest. */
export interface RedoRequestFields {
  readonly tenantId: string;
  readonly pgMajor: number;
  readonly tag?: BufferTagMessage | undefined;
  readonly baseImage?: Uint8Array | undefined;
  readonly records: readonly WalRecordMessage[];
}

export interface ValidRedoRequest {
  readonly tenantId: string;
  readonly pgMajor: number;
  readonly request: RedoRequest;
}

const TENANT_ID = /^[A-Za-z0-9_-]{1,64}$/;
const MAX_BLOCK_NUMBER = 0xfffffffd;

function invalid(message: string): ConnectError {
  return new ConnectError(message, Code.InvalidArgument);
}

/** INVALID_ARGUMENT unless tenantId is 1..64 of [A-Za-z0-9_-]. */
export function checkTenantId(tenantId: string): void {
  if (!TENANT_ID.test(tenantId)) {
    throw invalid(`tenant_id ${quoteInput(tenantId)} is invalid; use 1 to 64 characters of A-Z a-z 0-9 _ -`);
  }
}

/** INVALID_ARGUMENT unless the service serves this Postgres major. */
export function checkPgMajor(pgMajor: number, options: CompiledWalRedoOptions): void {
  if (!options.pgMajors.includes(pgMajor)) {
    throw invalid(`pg_major ${pgMajor} is not served here; supported: ${options.pgMajors.join(", ")}`);
  }
}

function touchesBlock(record: DecodedXLogRecord, tag: BufferTag): { applyImage: boolean; willInit: boolean } | undefined {
  for (const b of record.blocks) {
    if (b.rel.relNumber === tag.relNode && b.rel.dbOid === tag.dbNode && b.rel.spcOid === tag.spcNode
      && b.fork === tag.forkNumber && b.blockNumber === tag.blockNumber) {
      return { applyImage: b.applyImage, willInit: b.willInit };
    }
  }
  return undefined;
}

/**
 * Checks a redo request before it reaches a process: tenant id, pg major, a
 * tag in range, a base image of exactly 8192 bytes, at least one record,
 * each record a well-formed XLogRecord (xl_tot_len equal to its bytes,
 * headers adding up, a built-in rmgr) that references the requested block,
 * end LSNs strictly increasing, and — without a base image — a first record
 * that initialises the page (full-page image or WILL_INIT).
 * Throws ConnectError INVALID_ARGUMENT naming the field.
 */
export function validateRedoRequest(fields: RedoRequestFields, options: CompiledWalRedoOptions): ValidRedoRequest {
  checkTenantId(fields.tenantId);
  checkPgMajor(fields.pgMajor, options);
  if (!fields.tag) throw invalid("tag is missing; name the block to reconstruct (spc_oid, db_oid, rel_number, fork, block_number)");
  const fork = fields.tag.fork as number;
  if (!Number.isInteger(fork) || fork < 0 || fork > 3) throw invalid(`tag.fork ${fork} is not a fork number (0..3)`);
  if (fields.tag.blockNumber > MAX_BLOCK_NUMBER) throw invalid(`tag.block_number ${fields.tag.blockNumber} is beyond MaxBlockNumber`);
  const tag: BufferTag = {
    forkNumber: fork,
    spcNode: fields.tag.spcOid,
    dbNode: fields.tag.dbOid,
    relNode: fields.tag.relNumber,
    blockNumber: fields.tag.blockNumber,
  };
  const where = formatBufferTag(tag);
  if (fields.baseImage !== undefined && fields.baseImage.length !== PAGE_SIZE) {
    throw invalid(`base_image of ${where} has ${fields.baseImage.length} bytes; a page has exactly ${PAGE_SIZE}`);
  }
  if (fields.records.length === 0) throw invalid(`no records for ${where}; send at least one`);
  if (fields.records.length > options.maxRecordsPerRequest) {
    throw invalid(`${fields.records.length} records for ${where}; the limit is ${options.maxRecordsPerRequest} per request: split the request`);
  }
  let previousLsn = 0n;
  fields.records.forEach((r, i) => {
    if (r.endLsn <= previousLsn) {
      throw invalid(`records[${i}].end_lsn ${r.endLsn} is not after the previous record's ${previousLsn}; send records in LSN order`);
    }
    previousLsn = r.endLsn;
  });
  fields.records.forEach((r, i) => {
    if (r.record.length > options.maxRecordBytes) {
      throw invalid(`records[${i}] has ${r.record.length} bytes; the limit is ${options.maxRecordBytes}`);
    }
    let decoded: DecodedXLogRecord;
    try {
      decoded = decodeXLogRecord(r.record);
    } catch (err) {
      if (err instanceof XLogRecordDecodeError) throw invalid(`records[${i}] (end_lsn ${r.endLsn}) is not a valid XLogRecord: ${err.message}`);
      throw err;
    }
    if (decoded.rmid > RM_MAX_BUILTIN_ID) {
      throw invalid(`records[${i}] has resource manager id ${decoded.rmid}; known: 0..${RM_MAX_BUILTIN_ID} (${RMGR_NAMES.join(", ")})`);
    }
    const ref = touchesBlock(decoded, tag);
    if (!ref) throw invalid(`records[${i}] (end_lsn ${r.endLsn}, rmgr ${RMGR_NAMES[decoded.rmid]}) does not reference ${where}; send only the records of that block`);
    if (i === 0 && fields.baseImage === undefined && !ref.applyImage && !ref.willInit) {
      throw invalid(`no base_image for ${where}, and records[0] neither carries a full-page image nor initialises the page; send the base image`);
    }
  });
  return {
    tenantId: fields.tenantId,
    pgMajor: fields.pgMajor,
    request: {
      tag,
      ...(fields.baseImage !== undefined ? { baseImage: fields.baseImage } : {}),
      records: fields.records.map((r) => ({ endLsn: r.endLsn, record: r.record })),
    },
  };
}
