/**
 * The walredo pipe protocol, byte-compatible with Neon's `postgres --wal-redo`.
 *
 * Requests are frames: one tag byte, a big-endian int32 length that counts
 * itself (not the tag), then the payload.
 *   B  begin redo for a block     payload: buffer tag
 *   P  push the base page         payload: buffer tag + 8192 bytes
 *   A  apply one record           payload: u64 end LSN + raw XLogRecord
 *   G  get the page               payload: buffer tag        reply: 8192 bytes
 *   H  ping                       payload: none              reply: 8192 zero bytes
 * Replies carry no framing: each G or H is answered, in order, by 8192 bytes.
 */

export const PAGE_SIZE = 8192;
export const BUFFER_TAG_SIZE = 17;
/** sizeof(XLogRecord): the smallest record there is. */
export const XLOG_RECORD_HEADER_SIZE = 24;
/** The largest record a walredo process accepts (it exits on a bigger A frame). */
export const MAX_RECORD_BYTES = 64 * 1024 * 1024;

const FRAME_HEADER_SIZE = 5;
/** Forks are 0 main, 1 fsm, 2 visibility map, 3 init. */
export const MAX_FORK_NUMBER = 3;
/** Block numbers 0xFFFFFFFE (MaxBlockNumber) and up are refused by the process. */
export const MAX_REDO_BLOCK_NUMBER = 0xfffffffd;
const MAX_U64 = (1n << 64n) - 1n;

/** Postgres's BufferTag: which page of which relation fork. */
export interface BufferTag {
  /** 0 main, 1 fsm, 2 visibility map, 3 init. */
  readonly forkNumber: number;
  readonly spcNode: number;
  readonly dbNode: number;
  readonly relNode: number;
  readonly blockNumber: number;
}

/** One WAL record as Postgres wrote it, page headers stripped, with the LSN just past its end. */
export interface WalRecord {
  readonly endLsn: bigint;
  readonly record: Uint8Array;
}

/** Rebuild one page: start from baseImage (or from nothing: then the first record must initialise the page). */
export interface RedoRequest {
  readonly tag: BufferTag;
  readonly baseImage?: Uint8Array;
  readonly records: readonly WalRecord[];
}

/** A request that cannot be put on the wire; nothing was sent. */
export class RedoProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RedoProtocolError";
  }
}

export function formatBufferTag(tag: BufferTag): string {
  return `${tag.spcNode}/${tag.dbNode}/${tag.relNode} fork ${tag.forkNumber} block ${tag.blockNumber}`;
}

function checkU32(name: string, value: number, max = 0xffffffff): void {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new RedoProtocolError(`buffer tag ${name} ${value} is not an integer in 0..${max}`);
  }
}

export function checkBufferTag(tag: BufferTag): void {
  checkU32("forkNumber", tag.forkNumber, MAX_FORK_NUMBER);
  checkU32("spcNode", tag.spcNode);
  checkU32("dbNode", tag.dbNode);
  checkU32("relNode", tag.relNode);
  checkU32("blockNumber", tag.blockNumber, MAX_REDO_BLOCK_NUMBER);
}

function writeBufferTag(view: DataView, offset: number, tag: BufferTag): void {
  view.setUint8(offset, tag.forkNumber);
  view.setUint32(offset + 1, tag.spcNode);
  view.setUint32(offset + 5, tag.dbNode);
  view.setUint32(offset + 9, tag.relNode);
  view.setUint32(offset + 13, tag.blockNumber);
}

export function encodeBufferTag(tag: BufferTag): Uint8Array {
  checkBufferTag(tag);
  const bytes = new Uint8Array(BUFFER_TAG_SIZE);
  writeBufferTag(new DataView(bytes.buffer), 0, tag);
  return bytes;
}

export function decodeBufferTag(bytes: Uint8Array, offset = 0): BufferTag {
  if (bytes.byteLength - offset < BUFFER_TAG_SIZE) {
    throw new RedoProtocolError(`a buffer tag needs ${BUFFER_TAG_SIZE} bytes; ${bytes.byteLength - offset} left`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset + offset, BUFFER_TAG_SIZE);
  return {
    forkNumber: view.getUint8(0),
    spcNode: view.getUint32(1),
    dbNode: view.getUint32(5),
    relNode: view.getUint32(9),
    blockNumber: view.getUint32(13),
  };
}

function checkRecord(record: WalRecord, index: number): void {
  if (typeof record.endLsn !== "bigint" || record.endLsn <= 0n || record.endLsn > MAX_U64) {
    throw new RedoProtocolError(`record ${index}: end LSN ${String(record.endLsn)} is not a bigint in 1..2^64-1`);
  }
  const length = record.record.byteLength;
  if (length < XLOG_RECORD_HEADER_SIZE || length > MAX_RECORD_BYTES) {
    throw new RedoProtocolError(
      `record ${index}: ${length} bytes; a record has ${XLOG_RECORD_HEADER_SIZE}..${MAX_RECORD_BYTES} bytes`,
    );
  }
}

/** Writes frames into one preallocated buffer. */
class FrameWriter {
  readonly bytes: Uint8Array;
  private readonly view: DataView;
  private offset = 0;

  constructor(size: number) {
    this.bytes = new Uint8Array(size);
    this.view = new DataView(this.bytes.buffer);
  }

  frame(type: string, payloadLength: number): void {
    this.view.setUint8(this.offset, type.charCodeAt(0));
    this.view.setUint32(this.offset + 1, payloadLength + 4);
    this.offset += FRAME_HEADER_SIZE;
  }

  tag(tag: BufferTag): void {
    writeBufferTag(this.view, this.offset, tag);
    this.offset += BUFFER_TAG_SIZE;
  }

  u64(value: bigint): void {
    this.view.setBigUint64(this.offset, value);
    this.offset += 8;
  }

  raw(bytes: Uint8Array): void {
    this.bytes.set(bytes, this.offset);
    this.offset += bytes.byteLength;
  }
}

/**
 * Throws RedoProtocolError unless the request can be put on the wire as the
 * process expects it: a tag in Postgres's ranges, a base image of one page,
 * records of 24..MAX_RECORD_BYTES bytes with end LSNs in 1..2^64-1. For
 * callers that drive a process directly; the service validates more
 * (validateRedoRequest) and encodes what it validated.
 */
export function checkRedoRequest(request: RedoRequest): void {
  checkBufferTag(request.tag);
  if (request.baseImage !== undefined && request.baseImage.byteLength !== PAGE_SIZE) {
    throw new RedoProtocolError(`base image of ${formatBufferTag(request.tag)} has ${request.baseImage.byteLength} bytes; a page has ${PAGE_SIZE}`);
  }
  request.records.forEach(checkRecord);
}

/**
 * The frames of one redo request, B [P] A… G, in one buffer. Checks
 * nothing: encode only a request that checkRedoRequest or
 * validateRedoRequest has passed.
 */
export function encodeRedoRequest(request: RedoRequest): Uint8Array {
  const tagFrame = FRAME_HEADER_SIZE + BUFFER_TAG_SIZE;
  let size = tagFrame * 2;
  if (request.baseImage) size += tagFrame + PAGE_SIZE;
  for (const r of request.records) size += FRAME_HEADER_SIZE + 8 + r.record.byteLength;

  const out = new FrameWriter(size);
  out.frame("B", BUFFER_TAG_SIZE);
  out.tag(request.tag);
  if (request.baseImage) {
    out.frame("P", BUFFER_TAG_SIZE + PAGE_SIZE);
    out.tag(request.tag);
    out.raw(request.baseImage);
  }
  for (const r of request.records) {
    out.frame("A", 8 + r.record.byteLength);
    out.u64(r.endLsn);
    out.raw(r.record);
  }
  out.frame("G", BUFFER_TAG_SIZE);
  out.tag(request.tag);
  return out.bytes;
}

export function encodePing(): Uint8Array {
  const out = new FrameWriter(FRAME_HEADER_SIZE);
  out.frame("H", 0);
  return out.bytes;
}

/**
 * Cuts the reply stream (stdout of a walredo process) into pages, however the
 * pipe happened to chunk it.
 */
export class PageReplyDecoder {
  private page = new Uint8Array(PAGE_SIZE);
  private filled = 0;

  /** Bytes of a page received so far but not yet complete. */
  get pendingBytes(): number {
    return this.filled;
  }

  push(chunk: Uint8Array): Uint8Array[] {
    const pages: Uint8Array[] = [];
    let offset = 0;
    while (offset < chunk.byteLength) {
      const n = Math.min(PAGE_SIZE - this.filled, chunk.byteLength - offset);
      this.page.set(chunk.subarray(offset, offset + n), this.filled);
      this.filled += n;
      offset += n;
      if (this.filled === PAGE_SIZE) {
        pages.push(this.page);
        this.page = new Uint8Array(PAGE_SIZE);
        this.filled = 0;
      }
    }
    return pages;
  }
}
