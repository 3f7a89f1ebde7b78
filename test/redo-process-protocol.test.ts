import { describe, expect, it } from "vitest";
import {
  checkRedoRequest, decodeBufferTag, encodeBufferTag, encodePing, encodeRedoRequest, PageReplyDecoder, PAGE_SIZE, RedoProtocolError, type BufferTag,
} from "../src/walredo/redo-protocol.js";

const tag: BufferTag = { forkNumber: 2, spcNode: 1663, dbNode: 0x01020304, relNode: 0xfffffffe, blockNumber: 7 };
const tagBytes = [2, 0, 0, 0x06, 0x7f, 1, 2, 3, 4, 0xff, 0xff, 0xff, 0xfe, 0, 0, 0, 7];

/** A record-shaped byte string: xl_tot_len (little-endian) then filler. */
function fakeRecord(length: number): Uint8Array {
  const bytes = new Uint8Array(length).fill(0xab);
  new DataView(bytes.buffer).setUint32(0, length, true);
  return bytes;
}

describe("walredo frames", () => {
  it("encodes a buffer tag as 17 big-endian bytes and back", () => {
    expect([...encodeBufferTag(tag)]).toEqual(tagBytes);
    expect(decodeBufferTag(encodeBufferTag(tag))).toEqual(tag);
  });

  it("encodes a request as B, P, A…, G frames whose length counts itself", () => {
    const base = new Uint8Array(PAGE_SIZE).fill(9);
    const record = fakeRecord(30);
    const bytes = encodeRedoRequest({ tag, baseImage: base, records: [{ endLsn: 0x0102030405060708n, record }] });
    const view = new DataView(bytes.buffer);
    let at = 0;
    const frame = (type: string, payload: number) => {
      expect(String.fromCharCode(bytes[at]!)).toBe(type);
      expect(view.getInt32(at + 1)).toBe(payload + 4);
      const start = at + 5;
      at = start + payload;
      return start;
    };
    expect([...bytes.subarray(frame("B", 17), at)]).toEqual(tagBytes);
    const p = frame("P", 17 + PAGE_SIZE);
    expect([...bytes.subarray(p, p + 17)]).toEqual(tagBytes);
    expect(bytes.subarray(p + 17, at).every((b) => b === 9)).toBe(true);
    const a = frame("A", 8 + 30);
    expect(view.getBigUint64(a)).toBe(0x0102030405060708n);
    expect([...bytes.subarray(a + 8, at)]).toEqual([...record]);
    expect([...bytes.subarray(frame("G", 17), at)]).toEqual(tagBytes);
    expect(at).toBe(bytes.length);
  });

  it("encodes a ping as an empty H frame", () => {
    expect([...encodePing()]).toEqual([0x48, 0, 0, 0, 4]);
  });

  it("rejects a tag outside Postgres's ranges", () => {
    expect(() => encodeBufferTag({ ...tag, forkNumber: 4 })).toThrow(RedoProtocolError);
    expect(() => encodeBufferTag({ ...tag, blockNumber: 0xfffffffe })).toThrow(/blockNumber 4294967294 is not an integer in 0\.\.4294967293/);
    expect(() => encodeBufferTag({ ...tag, relNode: -1 })).toThrow(/relNode -1/);
  });

  it("rejects a base image that is not a page and a record shorter than its header", () => {
    expect(() => checkRedoRequest({ tag, baseImage: new Uint8Array(8191), records: [] })).toThrow(/8191 bytes; a page has 8192/);
    expect(() => checkRedoRequest({ tag, records: [{ endLsn: 1n, record: new Uint8Array(10) }] })).toThrow(/record 0: 10 bytes/);
    expect(() => checkRedoRequest({ tag, records: [{ endLsn: 0n, record: fakeRecord(24) }] })).toThrow(/end LSN 0/);
  });
});

describe("PageReplyDecoder", () => {
  it("cuts a reply stream into pages however it is chunked", () => {
    const stream = new Uint8Array(3 * PAGE_SIZE).map((_, i) => Math.floor(i / PAGE_SIZE) + 1);
    const decoder = new PageReplyDecoder();
    const pages: Uint8Array[] = [];
    for (const size of [1, 8190, 8194, 5000, 3]) {
      const offset = pages.length * PAGE_SIZE + decoder.pendingBytes;
      pages.push(...decoder.push(stream.subarray(offset, offset + size)));
    }
    pages.push(...decoder.push(stream.subarray(pages.length * PAGE_SIZE + decoder.pendingBytes)));
    expect(pages.map((p) => [p.length, p[0], p[PAGE_SIZE - 1]])).toEqual([[PAGE_SIZE, 1, 1], [PAGE_SIZE, 2, 2], [PAGE_SIZE, 3, 3]]);
    expect(decoder.pendingBytes).toBe(0);
  });
});
