import { quoteInput } from "../errors/index.js";
import { BundleRejectedError } from "./extension-store-errors.js";

const blockBytes = 512;
/** tar-stream's own limit for a pax or GNU long-name body. */
const maxMetaBodyBytes = 1024 * 1024;

/**
 * Follows the 512-byte block framing of a tar stream as tar-stream reads it
 * (header, data padded to a block; pax `size` records applied to the next
 * entry) and refuses what tar-stream would accept but GNU tar reads
 * differently, so the entries the store catalogs are the entries `tar -t`
 * lists:
 * - anything but zero bytes after the first zero block (GNU tar stops
 *   reading there; tar-stream skips zero blocks and reads on);
 * - a size field in base-256 that is negative or beyond 2^53 (tar-stream
 *   reads all-0xff as size 0; GNU tar refuses it);
 * - a size field that is not octal digits, a pax size that is not decimal
 *   digits, a global pax header that sets a size, a directory with data.
 * Throws BundleRejectedError ("invalid").
 */
export class TarFraming {
  private offset = 0;
  private readonly block = Buffer.alloc(blockBytes);
  private blockFill = 0;
  /** Data bytes (with padding) of the current entry still to pass. */
  private skipBytes = 0;
  /** Body of a pax header being read, and its type. */
  private meta: { readonly type: "x" | "g"; readonly size: number; readonly parts: Buffer[]; got: number } | undefined;
  /** The size a pax header set for the next entry. */
  private paxSize: number | undefined;
  /** Byte offset of the first zero block, once met. */
  private endOfArchive: number | undefined;

  /** Checks the next bytes of the stream. */
  push(chunk: Uint8Array): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.skipBytes > 0) {
        const n = Math.min(this.skipBytes, chunk.length - at);
        if (this.meta !== undefined && this.meta.got < this.meta.size) {
          const take = Math.min(n, this.meta.size - this.meta.got);
          this.meta.parts.push(Buffer.from(chunk.subarray(at, at + take)));
          this.meta.got += take;
          if (this.meta.got === this.meta.size) this.finishMeta();
        }
        this.skipBytes -= n;
        this.offset += n;
        at += n;
        continue;
      }
      const n = Math.min(blockBytes - this.blockFill, chunk.length - at);
      this.block.set(chunk.subarray(at, at + n), this.blockFill);
      this.blockFill += n;
      this.offset += n;
      at += n;
      if (this.blockFill === blockBytes) {
        this.blockFill = 0;
        this.onBlock();
      }
    }
  }

  /** Checks the end of the stream: a partial block after the end-of-archive marker must be zeros too. */
  end(): void {
    if (this.endOfArchive !== undefined && this.blockFill > 0) this.checkZero();
  }

  private onBlock(): void {
    if (this.endOfArchive !== undefined) {
      this.checkZero();
      return;
    }
    if (this.block.every((byte) => byte === 0)) {
      this.endOfArchive = this.offset - blockBytes;
      return;
    }
    const name = entryName(this.block);
    const type = String.fromCharCode(this.block[156]!);
    const size = headerSize(this.block, name);
    if (type === "x" || type === "g") {
      if (type === "x") this.paxSize = undefined; // tar-stream keeps only the newest entry pax header
      if (size > maxMetaBodyBytes) throw new BundleRejectedError("invalid", name, `its pax header declares ${size} bytes; at most ${maxMetaBodyBytes} are allowed`);
      this.meta = { type, size, parts: [], got: 0 };
      this.skipBytes = padded(size);
      if (size === 0) this.finishMeta();
      return;
    }
    if (type === "L" || type === "K") {
      this.skipBytes = padded(size);
      return;
    }
    const dataSize = this.paxSize ?? size;
    this.paxSize = undefined;
    const isDirectory = type === "5" || ((type === "0" || type === "\0") && name.endsWith("/"));
    if (isDirectory && dataSize !== 0) {
      throw new BundleRejectedError("invalid", name, `it is a directory that declares ${dataSize} bytes of data; tar readers disagree on what follows such an entry`);
    }
    this.skipBytes = padded(dataSize);
  }

  private finishMeta(): void {
    const meta = this.meta!;
    this.meta = undefined;
    const size = paxRecord(Buffer.concat(meta.parts).toString("utf8"), "size");
    if (size === undefined) return;
    if (meta.type === "g") throw new BundleRejectedError("invalid", undefined, "a global pax header sets a size; only an entry's own pax header may");
    if (!/^[0-9]{1,15}$/.test(size)) throw new BundleRejectedError("invalid", undefined, `a pax header gives size ${quoteInput(size)}; sizes are decimal digits below 2^53`);
    this.paxSize = Number(size);
  }

  private checkZero(): void {
    if (this.block.subarray(0, this.blockFill === 0 ? blockBytes : this.blockFill).every((byte) => byte === 0)) return;
    const name = entryName(this.block);
    throw new BundleRejectedError(
      "invalid",
      name === "" ? undefined : name,
      `${name === "" ? "it has data" : "it comes"} after the end-of-archive marker (the zero block at byte ${this.endOfArchive}); GNU tar stops reading there and would not see it; write nothing but zero padding after the end of the archive`,
    );
  }
}

/** The stream's chunks, unchanged, each checked by a TarFraming first. */
export async function* checkTarFraming(source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  const framing = new TarFraming();
  for await (const chunk of source) {
    framing.push(chunk);
    yield chunk;
  }
  framing.end();
}

function padded(size: number): number {
  return Math.ceil(size / blockBytes) * blockBytes;
}

/** The name field of a header (up to its first NUL), for messages. */
function entryName(block: Buffer): string {
  const end = block.indexOf(0);
  return block.subarray(0, end < 0 || end > 100 ? 100 : end).toString("utf8");
}

/** The size field (bytes 124–135), octal or positive base-256. */
function headerSize(block: Buffer, name: string): number {
  const field = block.subarray(124, 136);
  const invalid = (why: string) => new BundleRejectedError("invalid", name, `its size field ${why}`);
  if ((field[0]! & 0x80) !== 0) {
    if (field[0] !== 0x80) throw invalid("is a negative base-256 number; sizes are 0 or more (GNU tar refuses it)");
    let value = 0;
    for (const byte of field.subarray(1)) value = value * 256 + byte;
    if (value > Number.MAX_SAFE_INTEGER) throw invalid(`is a base-256 number beyond ${Number.MAX_SAFE_INTEGER}`);
    return value;
  }
  const text = field.toString("latin1").replace(/^[ \0]+/, "").replace(/[ \0]+$/, "");
  if (text === "") return 0;
  if (!/^[0-7]+$/.test(text)) throw invalid(`${quoteInput(text)} is not an octal number`);
  return parseInt(text, 8);
}

/** The value of `key` in a pax body ("<len> key=value\n" records), the last one winning. */
function paxRecord(body: string, key: string): string | undefined {
  let value: string | undefined;
  for (const line of body.split("\n")) {
    const match = /^[0-9]+ ([^=]+)=(.*)$/.exec(line);
    if (match !== null && match[1] === key) value = match[2];
  }
  return value;
}
