import { spawn } from "node:child_process";
import { once } from "node:events";
import { chmod, chown, mkdir, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../src/net/free-port.js";
import { initdb, resolveUnprivilegedUser, startPostgres, systemPgBinaries, type OsUser, type RunningPostgres } from "../src/pg/index.js";
import { RedoProcess } from "../src/walredo/redo-process.js";
import { RedoProcessExitedError, RedoProcessStartError } from "../src/walredo/redo-process-errors.js";
import { encodePing, encodeRedoRequest, PAGE_SIZE, RedoProtocolError, type BufferTag, type RedoRequest, type WalRecord } from "../src/walredo/redo-protocol.js";
import { ensureTestBundle } from "./bundle-fixture.js";
import { sysvSegments, type SysvSegment } from "./helpers/sysv-segments.js";
import { craftRecord, dumpRecords, maskHeapHints, pageLsn, parseLsn, readPage, recordsFor, type DumpedRecord } from "./redo-process-wal.js";

/**
 * Real WAL from a real Postgres 15: a table with a primary key, filled in
 * three phases with checkpoints between them (full_page_writes off for the
 * first two, on for the third), no reads of the table (so no hint bits), no
 * autovacuum. Every page the walredo process rebuilds must equal, byte for
 * byte, the page Postgres wrote at the following checkpoint.
 */
interface Workload {
  readonly heap: BufferTag;
  readonly meta: BufferTag;
  readonly leaf: BufferTag;
  readonly records: DumpedRecord[];
  readonly walDir: string;
  /** Pages as Postgres wrote them at checkpoints 1 to 4. */
  readonly atCheckpoint: ReadonlyArray<{ heap: Uint8Array; meta: Uint8Array; leaf: Uint8Array; lsn: bigint }>;
}

const binaries = systemPgBinaries(15);
let bundleDir: string;
let user: OsUser;
let root: string;
let postgres: RunningPostgres;
let workload: Workload;

async function buildWorkload(): Promise<Workload> {
  const dataDir = path.join(root, "data");
  const start = (fullPageWrites: "on" | "off", port: number) => startPostgres({
    binaries, user, dataDir, port, socketDir: path.join(root, "sock"), logFile: path.join(root, "pg.log"),
    settings: { full_page_writes: fullPageWrites, autovacuum: "off" },
  });
  const connect = async () => {
    const client = new pg.Client({ connectionString: postgres.connectionUri() });
    await client.connect();
    return client;
  };
  postgres = await start("off", await freePort());
  let client = await connect();
  const lsn = async () => parseLsn((await client.query<{ l: string }>("select pg_current_wal_insert_lsn()::text as l")).rows[0]!.l);
  const startLsn = await lsn();
  await client.query("create table t (id int primary key, v text)");
  const { rows } = await client.query<{ heap: string; idx: string; spc: number; db: number; heaprel: number; idxrel: number }>(
    `select pg_relation_filepath('t') as heap, pg_relation_filepath('t_pkey') as idx,
            1663 as spc, (select oid from pg_database where datname = current_database())::int as db,
            pg_relation_filenode('t')::int as heaprel, pg_relation_filenode('t_pkey')::int as idxrel`);
  const r = rows[0]!;
  const tag = (relNode: number, blockNumber: number): BufferTag => ({ forkNumber: 0, spcNode: r.spc, dbNode: r.db, relNode, blockNumber });
  const pages = async () => {
    await client.query("checkpoint");
    return {
      heap: await readPage(path.join(dataDir, r.heap), 0),
      meta: await readPage(path.join(dataDir, r.idx), 0),
      leaf: await readPage(path.join(dataDir, r.idx), 1),
      lsn: await lsn(),
    };
  };
  for (let i = 1; i <= 20; i++) await client.query("insert into t values ($1, $2)", [i, `row ${i}`]);
  await client.query("insert into t select g, 'row ' || g from generate_series(21, 40) g");
  const first = await pages();
  for (let i = 41; i <= 60; i++) await client.query("insert into t values ($1, $2)", [i, `second ${i}`]);
  await client.query("insert into t select g, repeat('x', g) from generate_series(61, 80) g");
  const second = await pages();
  // Restart with full-page writes: the next change of each page logs its image.
  await client.end();
  await postgres.stop("fast");
  postgres = await start("on", postgres.port);
  client = await connect();
  for (let i = 81; i <= 90; i++) await client.query("insert into t values ($1, $2)", [i, `third ${i}`]);
  const third = await pages();
  // Phase 4 sets and clears visibility-map bits (VACUUM, UPDATE, row locks): hint bits appear too.
  await client.query("vacuum t");
  await client.query("update t set v = 'updated' where id <= 5");
  await client.query("begin");
  await client.query("select * from t where id between 10 and 12 for update");
  await client.query("commit");
  await client.query("delete from t where id = 20");
  const fourth = await pages();
  await client.end();
  // pg_waldump reads what is written: a record inserted after the checkpoint (the bgwriter's
  // running-xacts) may still sit in WAL buffers up to fourth.lsn until Postgres stops.
  await postgres.stop("fast");
  const walDir = path.join(dataDir, "pg_wal");
  return {
    heap: tag(r.heaprel, 0), meta: tag(r.idxrel, 0), leaf: tag(r.idxrel, 1),
    records: await dumpRecords(binaries.binDir, walDir, startLsn, fourth.lsn),
    walDir,
    atCheckpoint: [first, second, third, fourth],
  };
}

/** Records touching `tag` whose end LSN lies in (fromLsn, toLsn]. */
async function recordsBetween(tag: BufferTag, fromLsn: bigint, toLsn: bigint): Promise<WalRecord[]> {
  const all = await recordsFor(workload.walDir, workload.records, tag);
  return all.filter((r) => r.endLsn > fromLsn && r.endLsn <= toLsn);
}

function startProcess(): Promise<RedoProcess> {
  return RedoProcess.start({ bundleDir, user: { uid: user.uid, gid: user.gid }, scratchRoot: root });
}

/** Children of `pid` still in the process table (running or zombie). */
async function childrenOf(pid: number): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, "utf8").catch(() => "");
    const m = /^\d+ \((.*)\) (\S) (\d+)/.exec(stat);
    if (m && Number(m[3]) === pid) found.push(`${entry} (${m[1]}) ${m[2]}`);
  }
  return found;
}

async function segmentsCreatedBy(pid: number): Promise<SysvSegment[]> {
  return (await sysvSegments()).filter((s) => s.creatorPid === pid);
}

/** A copy of a real record with one byte changed. */
function patched(record: WalRecord, offset: number, value: number): WalRecord {
  const bytes = new Uint8Array(record.record);
  bytes[offset] = value;
  return { endLsn: record.endLsn, record: bytes };
}

beforeAll(async () => {
  bundleDir = await ensureTestBundle();
  user = await resolveUnprivilegedUser();
  root = await mkdtemp(path.join(os.tmpdir(), "pgmesh-redo-process-"));
  await chmod(root, 0o755);
  await initdb({ binaries, dataDir: path.join(root, "data"), user, extraArgs: ["--no-sync"] });
  workload = await buildWorkload();
});

afterAll(async () => {
  await postgres?.stop("immediate");
  await rm(root, { recursive: true, force: true });
});

describe("RedoProcess page reconstruction", () => {
  let redo: RedoProcess;
  beforeAll(async () => {
    redo = await startProcess();
  });
  afterAll(async () => {
    redo.kill();
    await redo.exited;
  });

  it("answers a ping", async () => {
    await expect(redo.ping()).resolves.toBeUndefined();
  });

  it("rebuilds a heap page from its first record, byte-exact with the page Postgres wrote", async () => {
    const target = workload.atCheckpoint[1]!;
    const records = await recordsBetween(workload.heap, 0n, target.lsn);
    expect(records.length).toBeGreaterThan(40);
    const page = await redo.applyRecords({ tag: workload.heap, records });
    expect(pageLsn(page)).toBe(pageLsn(target.heap));
    expect(Buffer.from(page).equals(Buffer.from(target.heap))).toBe(true);
  });

  it("rebuilds btree pages (metapage from its full-page image, root leaf from newroot and inserts)", async () => {
    const target = workload.atCheckpoint[1]!;
    for (const [tag, expected] of [[workload.meta, target.meta], [workload.leaf, target.leaf]] as const) {
      const records = await recordsBetween(tag, 0n, target.lsn);
      const page = await redo.applyRecords({ tag, records });
      expect(Buffer.from(page).equals(Buffer.from(expected))).toBe(true);
    }
  });

  it("applies records on top of a base image", async () => {
    const [base, target] = [workload.atCheckpoint[0]!, workload.atCheckpoint[1]!];
    const records = await recordsBetween(workload.heap, pageLsn(base.heap), target.lsn);
    expect(records.length).toBeGreaterThan(10);
    const page = await redo.applyRecords({ tag: workload.heap, baseImage: base.heap, records });
    expect(Buffer.from(page).equals(Buffer.from(target.heap))).toBe(true);
  });

  it("starts from a full-page image without a base image", async () => {
    const [before, target] = [workload.atCheckpoint[1]!, workload.atCheckpoint[2]!];
    const fromImage = workload.records.filter((r) => r.startLsn >= before.lsn && r.fullPageImage
      && r.blocks.some((b) => b.relNode === workload.heap.relNode));
    expect(fromImage.length).toBeGreaterThan(0);
    const records = await recordsBetween(workload.heap, before.lsn, target.lsn);
    const page = await redo.applyRecords({ tag: workload.heap, records });
    expect(Buffer.from(page).equals(Buffer.from(target.heap))).toBe(true);
  });

  it("applies vacuum, update, row-lock and delete records that touch the visibility map (hint bits masked)", async () => {
    const [before, target] = [workload.atCheckpoint[2]!, workload.atCheckpoint[3]!];
    const records = await recordsBetween(workload.heap, pageLsn(before.heap), target.lsn);
    expect(records.length).toBeGreaterThan(5);
    const page = await redo.applyRecords({ tag: workload.heap, baseImage: before.heap, records });
    expect(pageLsn(page)).toBe(pageLsn(target.heap));
    expect(maskHeapHints(page).equals(maskHeapHints(target.heap))).toBe(true);
  });

  it("answers pipelined requests in order", async () => {
    const target = workload.atCheckpoint[1]!;
    const requests: Array<[RedoRequest, Uint8Array]> = [
      [{ tag: workload.heap, records: await recordsBetween(workload.heap, 0n, target.lsn) }, target.heap],
      [{ tag: workload.leaf, records: await recordsBetween(workload.leaf, 0n, target.lsn) }, target.leaf],
      [{ tag: workload.meta, records: await recordsBetween(workload.meta, 0n, target.lsn) }, target.meta],
    ];
    const replies = await Promise.all(Array.from({ length: 12 }, (_, i) => redo.applyRecords(requests[i % 3]![0])));
    replies.forEach((page, i) => expect(Buffer.from(page).equals(Buffer.from(requests[i % 3]![1]))).toBe(true));
  });

  it("returns the base image unchanged when no record follows", async () => {
    const base = workload.atCheckpoint[0]!.heap;
    const page = await redo.applyRecords({ tag: workload.heap, baseImage: base, records: [] });
    expect(Buffer.from(page).equals(Buffer.from(base))).toBe(true);
  });

  it("rejects a malformed request without sending it, and stays usable", async () => {
    await expect(redo.applyRecords({ tag: { ...workload.heap, forkNumber: 9 }, records: [] })).rejects.toThrow(RedoProtocolError);
    await expect(redo.applyRecords({ tag: workload.heap, baseImage: new Uint8Array(100), records: [] })).rejects.toThrow(/100 bytes; a page has 8192/);
    await expect(redo.ping()).resolves.toBeUndefined();
  });
});

describe("RedoProcess on invalid records", () => {
  async function expectExit(request: RedoRequest, reason: RegExp, code = 1): Promise<void> {
    const redo = await startProcess();
    const failing = redo.applyRecords(request);
    const next = redo.ping();
    await expect(failing).rejects.toThrow(RedoProcessExitedError);
    await expect(next).rejects.toThrow(RedoProcessExitedError);
    const exit = await redo.exited;
    expect(exit.code).toBe(code);
    expect(exit.reason).toMatch(reason);
    await expect(redo.ping()).rejects.toThrow(reason);
  }

  let heapRecords: WalRecord[];
  beforeAll(async () => {
    heapRecords = await recordsBetween(workload.heap, 0n, workload.atCheckpoint[1]!.lsn);
  });

  it("exits with a reason when xl_tot_len disagrees with the frame", async () => {
    await expectExit({ tag: workload.heap, records: [patched(heapRecords[0]!, 0, heapRecords[0]!.record[0]! + 1)] }, /xl_tot_len/);
  });

  it("exits with a reason on an unknown resource manager", async () => {
    await expectExit({ tag: workload.heap, records: [patched(heapRecords[0]!, 17, 200)] }, /unknown resource manager id 200/);
  });

  it("exits with a reason when the CRC does not match", async () => {
    const record = heapRecords[1]!;
    await expectExit({ tag: workload.heap, records: [patched(record, record.record.length - 1, record.record.at(-1)! ^ 0xff)] }, /CRC/);
  });

  it("exits with a reason on a record for another block", async () => {
    const leafRecords = await recordsBetween(workload.leaf, 0n, workload.atCheckpoint[1]!.lsn);
    await expectExit({ tag: workload.heap, records: [leafRecords.at(-1)!] }, /does not touch the requested block/);
  });

  it("exits with code 2 and Postgres's message when redo raises an error", async () => {
    // XLOG FPI (rmgr 0, info 0xB0) whose block reference carries no image.
    const record = craftRecord(0, 0xb0, workload.heap, new Uint8Array(0), new Uint8Array(0));
    await expectExit({ tag: workload.heap, records: [{ endLsn: 0x100000n, record }] }, /did not contain a full-page image/, 2);
  });

  it("exits with code 3, not a core dump, when redo panics", async () => {
    // Heap INSERT at offset 100 of an empty page: heap_xlog_insert PANICs "invalid max offset number".
    const empty = new Uint8Array(PAGE_SIZE);
    new DataView(empty.buffer).setUint16(12, 24, true); // pd_lower
    new DataView(empty.buffer).setUint16(14, PAGE_SIZE, true); // pd_upper
    new DataView(empty.buffer).setUint16(16, PAGE_SIZE, true); // pd_special
    new DataView(empty.buffer).setUint16(18, PAGE_SIZE | 4, true); // pd_pagesize_version
    const record = craftRecord(10, 0x00, workload.heap, new Uint8Array(8), new Uint8Array([100, 0, 0]));
    await expectExit({ tag: workload.heap, baseImage: empty, records: [{ endLsn: 0x100000n, record }] }, /PANIC.*invalid max offset number/, 3);
  });

  it("exits with a reason on random bytes", async () => {
    const junk = new Uint8Array(200).map((_, i) => (i * 37 + 11) & 0xff);
    new DataView(junk.buffer).setUint32(0, 200, true);
    await expectExit({ tag: workload.heap, records: [{ endLsn: 0x1000n, record: junk }] }, /resource manager|CRC|decoded/);
  });
});

describe("postgres --wal-redo (the drop-in interface)", () => {
  let scratchRoot: string;
  beforeAll(async () => {
    scratchRoot = path.join(root, "drop-in");
    await mkdir(scratchRoot);
    await chown(scratchRoot, user.uid, user.gid);
  });

  function launch(...extra: string[]) {
    return launchWith({ PGMESH_WALREDO_SCRATCH_ROOT: scratchRoot }, ...extra);
  }
  function launchWith(env: Record<string, string>, ...extra: string[]) {
    const child = spawn(path.join(bundleDir, "launcher"), ["15", "postgres", "--wal-redo", ...extra], {
      uid: user.uid, gid: user.gid, stdio: ["pipe", "pipe", "pipe"], env,
    });
    child.stdin.on("error", () => {
      // EPIPE once the process has exited on bad input
    });
    return child;
  }
  async function collect(child: ReturnType<typeof launch>): Promise<{ out: Buffer; err: string; code: number | null }> {
    const out: Buffer[] = [];
    let err = "";
    child.stdout.on("data", (c: Buffer) => out.push(c));
    child.stderr.on("data", (c: Buffer) => { err += c.toString(); });
    const [code] = await once(child, "close") as [number | null];
    return { out: Buffer.concat(out), err, code };
  }

  it("speaks the protocol on its own stdin and stdout and exits 0 at EOF", async () => {
    const target = workload.atCheckpoint[1]!;
    const child = launch();
    const done = collect(child);
    child.stdin.write(encodePing());
    child.stdin.write(encodeRedoRequest({ tag: workload.heap, records: await recordsBetween(workload.heap, 0n, target.lsn) }));
    child.stdin.end();
    const { out, code } = await done;
    expect(code).toBe(0);
    expect(await readdir(scratchRoot)).toEqual([]);
    expect(out.length).toBe(2 * PAGE_SIZE);
    expect(out.subarray(0, PAGE_SIZE).every((b) => b === 0)).toBe(true);
    expect(out.subarray(PAGE_SIZE).equals(Buffer.from(target.heap))).toBe(true);
  });

  it("builds its cluster in PGMESH_WALREDO_SCRATCH_DIR and removes that directory when its input ends", async () => {
    const dir = path.join(scratchRoot, "given");
    await mkdir(dir);
    await chown(dir, user.uid, user.gid);
    const child = launchWith({ PGMESH_WALREDO_SCRATCH_DIR: dir });
    const done = collect(child);
    child.stdin.write(encodePing());
    await once(child.stdout, "readable");
    expect(await readdir(dir)).toContain("data");
    child.stdin.end();
    expect((await done).code).toBe(0);
    await expect(readdir(dir)).rejects.toThrow(/ENOENT/);
  });

  it("runs without the seccomp filter when given --disable-seccomp", async () => {
    const child = launch("--disable-seccomp");
    const done = collect(child);
    child.stdin.write(encodePing());
    await once(child.stdout, "readable");
    const [postgresChild] = await childrenOf(child.pid!);
    const status = await readFile(`/proc/${postgresChild!.split(" ")[0]}/status`, "utf8");
    child.stdin.end();
    expect(status).toMatch(/Seccomp:\s+0\n/);
    expect((await done).code).toBe(0);
  });

  it("marks its System V segment for removal once it serves, so none is left when it is killed", async () => {
    const child = launch();
    const done = collect(child);
    child.stdin.write(encodePing());
    await once(child.stdout, "readable");
    const postgresPid = Number((await childrenOf(child.pid!))[0]!.split(" ")[0]);
    const segments = await segmentsCreatedBy(postgresPid);
    expect(segments).toHaveLength(1);
    expect(segments[0]!.key).toBe(0); // IPC_PRIVATE: removed, kept only while attached
    process.kill(postgresPid, "SIGKILL");
    await done;
    expect(await segmentsCreatedBy(postgresPid)).toEqual([]);
  });

  it("exits with a reason on an unknown frame type", async () => {
    const child = launch();
    const done = collect(child);
    child.stdin.end(Buffer.from([0x5a, 0, 0, 0, 4]));
    const { code, err } = await done;
    expect(code).toBe(1);
    expect(err).toMatch(/unknown frame type 0x5a/);
  });

  it("exits with a reason when input ends inside a frame", async () => {
    const child = launch();
    const done = collect(child);
    child.stdin.end(Buffer.from([0x41, 0, 0, 0x10, 0, 1, 2, 3]));
    const { code, err } = await done;
    expect(code).toBe(1);
    expect(err).toMatch(/input ended inside frame 'A'/);
  });
});

describe("RedoProcess lifecycle", () => {
  it("kill() ends the process and its Postgres child (which runs under seccomp), removes the scratch cluster, and rejects later calls", async () => {
    const redo = await startProcess();
    const children = await childrenOf(redo.pid);
    expect(children).toHaveLength(1);
    const postgresChild = children[0]!;
    const pgPid = Number(postgresChild.split(" ")[0]);
    expect(await readFile(`/proc/${pgPid}/status`, "utf8")).toMatch(/Seccomp:\s+2\n/);
    const scratchBefore = (await readdir(root)).filter((n) => n.startsWith("pgmesh-redo-"));
    expect(scratchBefore.length).toBeGreaterThan(0);
    redo.kill();
    const exit = await redo.exited;
    expect(exit.signal).toBe("SIGTERM");
    expect(redo.alive).toBe(false);
    await expect(redo.ping()).rejects.toThrow(RedoProcessExitedError);
    expect(await childrenOf(redo.pid)).toEqual([]);
    expect(await childrenOf(process.pid).then((c) => c.filter((l) => l.endsWith(" Z")))).toEqual([]);
    await expect(readFile(`/proc/${pgPid}/stat`, "utf8")).rejects.toThrow();
    expect((await readdir(root)).filter((n) => scratchBefore.includes(n))).toEqual([]);
  });

  it("start() fails with the reason when the bundle has no such Postgres major", async () => {
    const start = RedoProcess.start({ bundleDir, pgMajor: 14, user: { uid: user.uid, gid: user.gid }, scratchRoot: root });
    await expect(start).rejects.toThrow(RedoProcessStartError);
    await expect(start).rejects.toThrow(/no PostgreSQL 14/);
  });
});
