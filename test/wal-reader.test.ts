import { copyFile, mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pgProgram, systemPgBinaries } from "../src/pg/index.js";
import {
  computeRecordCrc, crc32c, dateToTimestamp, decodeXLogRecord, formatLsn, lastRecordAtOrBelow, lastTransactionEndAtOrBefore, readWalRecords, RMGR_NAMES,
  timestampToDate, transactionEnd, walBytesSource, WalFormatError, XLogRecordDecodeError, type WalBytes, type WalRecord,
} from "../src/wal/index.js";
import { runWalWorkload, type WalWorkload } from "./walredo-workload.js";

const FORK_NAMES = ["main", "fsm", "vm", "init"];

/** What pg_waldump prints of a record, and the same fields of ours in the same shape. */
interface DumpLine {
  rmgr: string;
  recLen: number;
  totLen: number;
  xid: number;
  lsn: string;
  prev: string;
  blocks: string[];
}

function parseWaldump(stdout: string): DumpLine[] {
  return stdout.split("\n").filter((l) => l.startsWith("rmgr:")).map((line) => {
    const m = /^rmgr: (\S+)\s+len \(rec\/tot\):\s*(\d+)\/\s*(\d+), tx:\s*(\d+), lsn: (\S+), prev (\S+), desc: /.exec(line);
    if (!m) throw new Error(`unexpected pg_waldump line: ${line}`);
    const blocks = [...line.matchAll(/blkref #(\d+): rel (\d+)\/(\d+)\/(\d+)(?: fork (\w+))? blk (\d+)( FPW)?/g)]
      .map((b) => `#${b[1]} ${b[2]}/${b[3]}/${b[4]} ${b[5] ?? "main"} ${b[6]}${b[7] ? " FPW" : ""}`);
    return { rmgr: m[1]!, recLen: Number(m[2]), totLen: Number(m[3]), xid: Number(m[4]), lsn: m[5]!, prev: m[6]!, blocks };
  });
}

function asDumpLine(r: WalRecord): DumpLine {
  const imageBytes = r.blocks.reduce((sum, b) => sum + b.imageLength, 0);
  return {
    rmgr: RMGR_NAMES[r.rmid] ?? String(r.rmid),
    recLen: r.totalLength - imageBytes,
    totLen: r.totalLength,
    xid: r.xid,
    lsn: formatLsn(r.startLsn),
    prev: formatLsn(r.prevLsn),
    blocks: r.blocks.map((b) => `#${b.blockId} ${b.rel.spcOid}/${b.rel.dbOid}/${b.rel.relNumber} ${FORK_NAMES[b.fork]} ${b.blockNumber}${b.hasImage ? " FPW" : ""}`),
  };
}

/** Timeline 1, 16 MiB segments. */
function segmentNameOf(lsn: bigint): string {
  const segno = lsn / 0x1000000n;
  const hex = (n: bigint) => n.toString(16).toUpperCase().padStart(8, "0");
  return hex(1n) + hex(segno / 256n) + hex(segno % 256n);
}

async function collect(iterable: AsyncIterable<WalRecord>): Promise<WalRecord[]> {
  const out: WalRecord[] = [];
  for await (const r of iterable) out.push(r);
  return out;
}

let workload: WalWorkload;
let records: WalRecord[];

beforeAll(async () => {
  workload = await runWalWorkload({ pgbenchScale: 1, pgbenchTransactions: 200 });
  records = await collect(readWalRecords({ walDir: workload.walDir, startLsn: workload.baseLsn }));
});

afterAll(async () => {
  await workload?.cleanup();
});

describe("CRC-32C", () => {
  it("matches the Castagnoli check value", () => {
    expect(crc32c(new TextEncoder().encode("123456789"))).toBe(0xe3069283);
    expect(crc32c(new Uint8Array(0))).toBe(0);
  });
});

describe("decodeXLogRecord", () => {
  it("rejects a record whose xl_tot_len differs from its length", () => {
    const bytes = new Uint8Array(26);
    new DataView(bytes.buffer).setUint32(0, 30, true);
    expect(() => decodeXLogRecord(bytes)).toThrow(XLogRecordDecodeError);
    expect(() => decodeXLogRecord(bytes)).toThrow(/xl_tot_len is 30 but the record has 26 bytes/);
  });

  it("rejects a main-data header that announces more bytes than follow", () => {
    const bytes = new Uint8Array(24 + 2 + 3);
    new DataView(bytes.buffer).setUint32(0, bytes.length, true);
    bytes[24] = 255;
    bytes[25] = 10;
    expect(() => decodeXLogRecord(bytes)).toThrow(/headers announce 10 payload bytes but 3 follow/);
  });

  it("rejects block ids out of order", () => {
    const bytes = new Uint8Array(24 + 2 * (4 + 12 + 4));
    new DataView(bytes.buffer).setUint32(0, bytes.length, true);
    bytes[24] = 1;
    bytes[24 + 20] = 0;
    expect(() => decodeXLogRecord(bytes)).toThrow(/block id 0 out of order/);
  });
});

describe("WAL reader on real PostgreSQL 15 WAL", () => {

  it("reads the same records as pg_waldump: LSNs, xids, lengths and block references", async () => {
    const dump = await execa(pgProgram(systemPgBinaries(15), "pg_waldump"), ["-p", workload.walDir, "-s", formatLsn(workload.baseLsn)], { reject: false });
    const expected = parseWaldump(dump.stdout);
    expect(expected.length).toBeGreaterThan(1000);
    expect(records.map(asDumpLine)).toEqual(expected);
  });

  it("reads records that span pages and segments", () => {
    const spansPage = records.some((r) => r.startLsn / 8192n !== (r.endLsn - 1n) / 8192n);
    const spansSegment = records.some((r) => r.startLsn / 0x1000000n !== (r.endLsn - 1n) / 0x1000000n);
    expect(spansPage).toBe(true);
    expect(spansSegment).toBe(true);
  });

  it("gives each record the end LSN where the next one starts, page headers skipped", () => {
    for (let i = 0; i + 1 < records.length; i++) {
      const end = records[i]!.endLsn;
      const nextStart = records[i + 1]!.startLsn;
      const header = end % 0x1000000n === 0n ? 40n : end % 8192n === 0n ? 24n : 0n;
      expect(nextStart, `after the record at ${formatLsn(records[i]!.startLsn)}`).toBe(end + header);
    }
  });

  it("strips page headers: each record's bytes are xl_tot_len long and decode again", () => {
    for (const r of records) {
      expect(r.bytes.length).toBe(r.totalLength);
      expect(decodeXLogRecord(r.bytes).blocks).toEqual(r.blocks);
    }
  });

  it("skips a record whose continuation was overwritten (XLP_FIRST_IS_OVERWRITE_CONTRECORD), as after a crash", async () => {
    const spanning = records.find((r) => r.startLsn / 8192n + 1n === (r.endLsn - 1n) / 8192n && r.startLsn % 0x1000000n > 8192n && (r.endLsn - 1n) % 0x1000000n > 8192n)!;
    const dir = path.join(workload.root, "overwritten-wal");
    await mkdir(dir, { recursive: true });
    const segName = segmentNameOf(spanning.startLsn);
    await copyFile(path.join(workload.walDir, segName), path.join(dir, segName));
    const seg = await readFile(path.join(dir, segName));
    const pageLsn = (spanning.startLsn / 8192n + 1n) * 8192n;
    const page = Number(pageLsn % 0x1000000n);
    seg.writeUInt16LE(0x0008, page + 2); // xlp_info: XLP_FIRST_IS_OVERWRITE_CONTRECORD
    seg.writeUInt32LE(0, page + 16); // xlp_rem_len
    seg.fill(0, page + 24);
    // An XLOG_NOOP record (24 bytes, no data) right after the page header, as Postgres writes one there.
    const noop = Buffer.alloc(24);
    noop.writeUInt32LE(24, 0);
    noop.writeBigUInt64LE(spanning.startLsn, 8);
    noop[16] = 0x20;
    noop[17] = 0;
    noop.writeUInt32LE(computeRecordCrc(noop), 20);
    noop.copy(seg, page + 24);
    await writeFile(path.join(dir, segName), seg);
    const read = await collect(readWalRecords({ walDir: dir, startLsn: records.find((r) => r.endLsn === spanning.startLsn)?.startLsn ?? spanning.startLsn }));
    expect(read.map((r) => r.startLsn)).not.toContain(spanning.startLsn);
    expect(read.at(-1)).toMatchObject({ startLsn: pageLsn + 24n, rmid: 0, info: 0x20, totalLength: 24, endLsn: pageLsn + 48n });
  });

  it("reports a record whose CRC does not match", async () => {
    const target = records.find((r) => r.totalLength > 100 && r.startLsn % 8192n < 4000n)!;
    const corruptDir = path.join(workload.root, "corrupt-wal");
    await mkdir(corruptDir, { recursive: true });
    const segName = segmentNameOf(target.startLsn);
    await copyFile(path.join(workload.walDir, segName), path.join(corruptDir, segName));
    const seg = await readFile(path.join(corruptDir, segName));
    const offset = Number(target.startLsn % 0x1000000n) + 60;
    seg[offset] = seg[offset]! ^ 0xff;
    await writeFile(path.join(corruptDir, segName), seg);
    const reading = collect(readWalRecords({ walDir: corruptDir, startLsn: target.startLsn }));
    await expect(reading).rejects.toThrow(WalFormatError);
    await expect(collect(readWalRecords({ walDir: corruptDir, startLsn: target.startLsn })))
      .rejects.toThrow(`WAL at ${formatLsn(target.startLsn)}: incorrect record CRC`);
  });
});

describe("WAL utilities on real PostgreSQL 15 WAL", () => {
  let pieces: WalBytes[];
  const waldump = pgProgram(systemPgBinaries(15), "pg_waldump");

  beforeAll(async () => {
    // The segments from the base on, cut into pieces of an odd size, as chunks fetched from a store.
    const segStart = (workload.baseLsn / 0x1000000n) * 0x1000000n;
    const lastEnd = records.at(-1)!.endLsn;
    pieces = [];
    for (let at = segStart; at < lastEnd; at += 0x1000000n) {
      const seg = await readFile(path.join(workload.walDir, segmentNameOf(at)));
      for (let off = 0; off < seg.length && at + BigInt(off) < lastEnd; off += 100_003) {
        pieces.push({ startLsn: at + BigInt(off), bytes: seg.subarray(off, Math.min(off + 100_003, seg.length)) });
      }
    }
  });

  it("reads the same records from WAL pieces held in memory as from the segment files", async () => {
    const fromPieces = await collect(readWalRecords({ source: walBytesSource([...pieces].reverse()), startLsn: workload.baseLsn }));
    expect(fromPieces.map((r) => [r.startLsn, r.endLsn, r.crc])).toEqual(records.map((r) => [r.startLsn, r.endLsn, r.crc]));
  });

  it("reads from a record boundary in the middle of a segment when the pieces begin there", async () => {
    const from = records[Math.floor(records.length / 2)]!;
    const tail = pieces.filter((p) => p.startLsn + BigInt(p.bytes.length) > from.startLsn).map((p) =>
      p.startLsn >= from.startLsn ? p : { startLsn: from.startLsn, bytes: p.bytes.subarray(Number(from.startLsn - p.startLsn)) });
    const read = await collect(readWalRecords({ source: walBytesSource(tail), startLsn: from.startLsn }));
    expect(read[0]!.startLsn).toBe(from.startLsn);
    expect(read.length).toBe(records.length - records.indexOf(from));
  });

  it("ends at the last complete record when the bytes stop in the middle of one", async () => {
    const cut = records.find((r, i) => i > 100 && r.totalLength > 64)!;
    const held = pieces.filter((p) => p.startLsn < cut.startLsn + 40n).map((p) =>
      ({ startLsn: p.startLsn, bytes: p.bytes.subarray(0, Math.max(0, Number(cut.startLsn + 40n - p.startLsn))) }));
    const read = await collect(readWalRecords({ source: walBytesSource(held), startLsn: workload.baseLsn }));
    expect(read.at(-1)!.endLsn).toBe(records[records.indexOf(cut) - 1]!.endLsn);
  });

  it("normalises an LSN down to the end of the last complete record, the record pg_waldump -e stops after", async () => {
    const first = records[0]!.startLsn;
    const span = records.at(-1)!.endLsn - first;
    const targets = Array.from({ length: 5 }, (_, i) => ((first + (span * BigInt(2 * i + 1)) / 10n) / 8n) * 8n);
    targets.push(records[40]!.endLsn);
    for (const target of targets) {
      const last = await lastRecordAtOrBelow({ walDir: workload.walDir, startLsn: workload.baseLsn, atOrBelow: target });
      const dump = await execa(waldump, ["-p", workload.walDir, "-s", formatLsn(workload.baseLsn), "-e", formatLsn(target)], { reject: false });
      const printed = parseWaldump(dump.stdout);
      expect(formatLsn(last!.startLsn), `at ${formatLsn(target)}`).toBe(printed.at(-1)!.lsn);
      expect(last!.endLsn <= target).toBe(true);
      const next = records[records.findIndex((r) => r.startLsn === last!.startLsn) + 1];
      if (next) expect(next.endLsn > target).toBe(true);
    }
  });

  it("reads commit timestamps (xact_time) as pg_waldump prints them", async () => {
    const dump = await execa(waldump, ["-p", workload.walDir, "-s", formatLsn(workload.baseLsn), "-r", "Transaction"], { env: { TZ: "UTC" }, reject: false });
    const printed = dump.stdout.split("\n").flatMap((line) => {
      const m = /lsn: (\S+), prev \S+, desc: (COMMIT|ABORT) (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}) UTC/.exec(line);
      return m ? [`${m[1]} ${m[2]!.toLowerCase()} ${m[3]}`] : [];
    });
    const ours = records.flatMap((r) => {
      const end = transactionEnd(r);
      if (!end) return [];
      const seconds = timestampToDate(end.timestamp).toISOString().slice(0, 19).replace("T", " ");
      return [`${formatLsn(r.startLsn)} ${end.kind} ${seconds}.${String(end.timestamp % 1_000_000n).padStart(6, "0")}`];
    });
    expect(printed.length).toBeGreaterThan(100);
    expect(ours).toEqual(printed);
  });

  it("finds the last commit at or before a time: every earlier transaction end is at or before it, the next is after", async () => {
    const ends = records.flatMap((r) => {
      const end = transactionEnd(r);
      return end ? [{ record: r, end }] : [];
    });
    const time = timestampToDate(ends[Math.floor(ends.length / 2)]!.end.timestamp);
    const target = dateToTimestamp(time);
    const found = await lastTransactionEndAtOrBefore({ source: walBytesSource(pieces), startLsn: workload.baseLsn, time });
    const at = ends.findIndex((e) => e.record.startLsn === found!.record.startLsn);
    expect(found!.end.timestamp <= target).toBe(true);
    expect(ends.slice(0, at).every((e) => e.end.timestamp <= target)).toBe(true);
    expect(ends[at + 1]!.end.timestamp > target).toBe(true);
  });

  it("finds no commit before the first one", async () => {
    const firstEnd = records.map((r) => transactionEnd(r)).find((e) => e)!;
    const before = new Date(timestampToDate(firstEnd.timestamp).getTime() - 1);
    await expect(lastTransactionEndAtOrBefore({ walDir: workload.walDir, startLsn: workload.baseLsn, time: before })).resolves.toBeUndefined();
  });
});
