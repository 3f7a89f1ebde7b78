import { Code, ConnectError } from "@connectrpc/connect";
import { readFile, readlink } from "node:fs/promises";
import path from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RedoRequest, RedoResponse } from "../gen/pgmesh/walredo/v1/walredo_pb.js";
import type { BufferTag } from "../src/walredo/index.js";
import { resolveUnprivilegedUser } from "../src/pg/index.js";
import { computeRecordCrc, decodeXLogRecord } from "../src/wal/index.js";
import {
  eventually, pageCaseRequest, processTree, stillRunning, startWalRedoHarness, walredoChildCounter, withWalRedoHarness, type WalRedoHarness,
} from "./walredo-harness.js";
import { ensureTestBundle } from "./bundle-fixture.js";
import { maskPage } from "./walredo-page-mask.js";
import { buildPageCases, runWalWorkload, type PageCase, type WalWorkload } from "./walredo-workload.js";
import { craftBlocksRecord, craftRecord } from "./redo-process-wal.js";

const RM_HEAP_ID = 10;
const XLOG_HEAP_INSERT = 0x00;
/** offsetof(XLogRecord, xl_crc). */
const XLOG_RECORD_CRC_OFFSET = 20;

async function redoStream(harness: WalRedoHarness, requests: RedoRequest[]): Promise<Map<bigint, RedoResponse>> {
  const byId = new Map<bigint, RedoResponse>();
  for await (const response of harness.client.redo((async function* () { yield* requests; })())) {
    byId.set(response.requestId, response);
  }
  return byId;
}

/** The RedoPage form of a stream request. */
function unary(request: RedoRequest): Omit<RedoRequest, "$typeName" | "requestId"> {
  const { $typeName: _t, requestId: _r, ...fields } = request;
  return fields;
}

function pageOf(response: RedoResponse | undefined): Uint8Array {
  if (response?.result.case !== "page") throw new Error(`expected a page, got ${JSON.stringify(response?.result)}`);
  return response.result.value;
}

describe("WalRedo service", () => {
  let workload: WalWorkload;
  let cases: PageCase[];
  /** Heap pages whose records are all heap records, with a later plain INSERT (no image) to corrupt. */
  let insertCase: { c: PageCase; index: number };

  beforeAll(async () => {
    workload = await runWalWorkload({ pgbenchScale: 1, pgbenchTransactions: 50 });
    cases = (await buildPageCases(workload)).filter((c) => c.records.length >= 2);
    for (const c of cases) {
      if (c.relation.kind !== "heap") continue;
      const index = c.records.findIndex((r, i) => {
        const d = decodeXLogRecord(r.record);
        return i > 0 && d.rmid === RM_HEAP_ID && (d.info & 0x70) === XLOG_HEAP_INSERT && d.blocks.length === 1 && !d.blocks[0]!.hasImage;
      });
      if (index > 0) {
        insertCase = { c, index };
        break;
      }
    }
  });

  afterAll(async () => {
    await workload?.cleanup();
  });

  /** The page's records up to a plain heap INSERT whose offnum (the first field of its main data) lies far past the page's last item. */
  function poisonedInsertRequest(tenantId: string): RedoRequest {
    const { c, index } = insertCase;
    const records = c.records.slice(0, index + 1).map((r) => ({ ...r, record: Uint8Array.from(r.record) }));
    const bad = records[index]!.record;
    const view = new DataView(bad.buffer);
    view.setUint16(bad.length - decodeXLogRecord(bad).mainDataLength, 0x7fff, true);
    view.setUint32(XLOG_RECORD_CRC_OFFSET, computeRecordCrc(bad), true);
    return pageCaseRequest(workload, c, { records, tenantId });
  }

  describe("with one pool", () => {
    let harness: WalRedoHarness;
    beforeAll(async () => {
      harness = await startWalRedoHarness({});
    });
    afterAll(async () => {
      await harness?.close();
    });

    it("answers pipelined requests on one stream by request id, each page as Postgres wrote it", async () => {
      const sample = cases.slice(0, 60);
      const requests = sample.map((c, i) => pageCaseRequest(workload, c, { requestId: BigInt(1000 + i * 7) }));
      const responses = await redoStream(harness, requests);
      expect([...responses.keys()].sort()).toEqual(requests.map((r) => r.requestId).sort());
      sample.forEach((c, i) => {
        const page = pageOf(responses.get(BigInt(1000 + i * 7)));
        expect(maskPage(c.relation.kind, page, c.blockNumber).equals(maskPage(c.relation.kind, c.finalPage, c.blockNumber))).toBe(true);
      });
    });

    it("keeps serving after a client cancels a Redo stream mid-way", async () => {
      const abort = new AbortController();
      const requests = cases.slice(0, 100).map((c, i) => pageCaseRequest(workload, c, { requestId: BigInt(i) }));
      const call = async () => {
        for await (const _ of harness.client.redo((async function* () { yield* requests; })(), { signal: abort.signal })) abort.abort();
      };
      await expect(call()).rejects.toMatchObject({ code: Code.Canceled });
      const c = cases[3]!;
      const { page } = await harness.client.redoPage(unary(pageCaseRequest(workload, c)));
      expect(maskPage(c.relation.kind, page, c.blockNumber).equals(maskPage(c.relation.kind, c.finalPage, c.blockNumber))).toBe(true);
    });

    it("reports its processes, spawns and exits on /metrics", async () => {
      await harness.client.redoPage(unary(pageCaseRequest(workload, cases[0]!)));
      const { processes, spawns, exits } = harness.pool.stats;
      const text = await (await fetch(`${harness.server.url}/metrics`)).text();
      expect(text).toContain(`pgmesh_walredo_processes ${processes}`);
      expect(text).toContain(`pgmesh_walredo_spawns_total ${spawns}`);
      expect(text).toContain(`pgmesh_walredo_exits_total ${exits}`);
      expect(processes).toBeGreaterThan(0);
    });

    it("answers RedoPage with the same page as the stream", async () => {
      const c = cases[0]!;
      const { page } = await harness.client.redoPage(unary(pageCaseRequest(workload, c)));
      const streamed = pageOf((await redoStream(harness, [pageCaseRequest(workload, c, { requestId: 5n })])).get(5n));
      expect(Buffer.from(page).equals(Buffer.from(streamed))).toBe(true);
    });

    it("runs each process as the unprivileged user, chrooted into the bundle, with resource limits", async () => {
      await harness.client.ping({ tenantId: "tenant-sandbox", pgMajor: 15 });
      const user = await resolveUnprivilegedUser();
      const bundleDir = await ensureTestBundle();
      for (const pid of await processTree(harness.pool.pids)) {
        const status = await readFile(`/proc/${pid}/status`, "utf8");
        expect(/^Uid:\s+(\d+)/m.exec(status)?.[1], `pid ${pid}`).toBe(String(user.uid));
        expect(await readlink(`/proc/${pid}/root`)).toBe(path.join(bundleDir, "v15"));
        const limits = await readFile(`/proc/${pid}/limits`, "utf8");
        expect(limits).toMatch(/Max core file size\s+0\s+0/);
        expect(limits).toMatch(/Max open files\s+256\s+256/);
        expect(limits).toMatch(/Max address space\s+1073741824\s+1073741824/);
      }
    });

    it("answers Ping with the round trip to the tenant's process", async () => {
      const { roundTripUs } = await harness.client.ping({ tenantId: "tenant-a", pgMajor: 15 });
      expect(roundTripUs).toBeGreaterThan(0n);
    });

    it("rejects bad input with INVALID_ARGUMENT per request and keeps the stream going", async () => {
      const c = cases[0]!;
      const other = cases.find((o) => o.relation.relNumber !== c.relation.relNumber)!;
      const good = pageCaseRequest(workload, c, { requestId: 99n });
      const record = c.records[0]!.record;
      const withRecord = (id: bigint, bytes: Uint8Array) => pageCaseRequest(workload, c, { requestId: id, records: [{ endLsn: c.records[0]!.endLsn, record: bytes }] });
      const wrongLength = Uint8Array.from(record);
      new DataView(wrongLength.buffer).setUint32(0, record.length + 8, true);
      const unknownRmgr = Uint8Array.from(record);
      unknownRmgr[17] = 99;
      const random = Uint8Array.from({ length: 300 }, (_, i) => (i * 7919 + 13) & 0xff);
      const cases_: [bigint, RedoRequest, RegExp][] = [
        [1n, pageCaseRequest(workload, c, { requestId: 1n, tenantId: "bad tenant!" }), /tenant_id "bad tenant!" is not valid: use 1 to 64 letters/],
        [2n, { ...pageCaseRequest(workload, c, { requestId: 2n }), pgMajor: 14 }, /pg_major 14 is not served here; supported: 15/],
        [3n, pageCaseRequest(workload, c, { requestId: 3n, baseImage: new Uint8Array(100) }), /base_image of .* has 100 bytes; a page has exactly 8192/],
        [4n, pageCaseRequest(workload, c, { requestId: 4n, records: [...c.records].reverse() }), /records\[1\]\.end_lsn .* is not after the previous record's/],
        [5n, withRecord(5n, record.subarray(0, record.length - 5)), /records\[0\] .* is not a valid XLogRecord: xl_tot_len is \d+ but the record has \d+ bytes/],
        [6n, withRecord(6n, wrongLength), /xl_tot_len is \d+ but the record has \d+ bytes/],
        [7n, withRecord(7n, unknownRmgr), /records\[0\] has resource manager id 99/],
        [8n, pageCaseRequest(workload, c, { requestId: 8n, records: other.records.slice(0, 1) }), /records\[0\] .* does not reference/],
        [9n, withRecord(9n, random), /records\[0\] .* is not a valid XLogRecord/],
        [10n, pageCaseRequest(workload, c, { requestId: 10n, records: [] }), /no records for/],
      ];
      const pidsBefore = harness.pool.pids;
      const responses = await redoStream(harness, [...cases_.map(([, r]) => r), good]);
      for (const [id, , message] of cases_) {
        const result = responses.get(id)?.result;
        expect(result?.case, `request ${id}`).toBe("error");
        if (result?.case !== "error") continue;
        expect(result.value.code, `request ${id}`).toBe(Code.InvalidArgument);
        expect(result.value.message, `request ${id}`).toMatch(message);
      }
      pageOf(responses.get(99n));
      expect(harness.pool.pids).toEqual(pidsBefore);
    });

    it("answers a request whose records kill the process with INVALID_ARGUMENT after one retry, replaces the process, and serves the next request", async () => {
      expect(insertCase).toBeDefined();
      await harness.client.ping({ tenantId: "tenant-a", pgMajor: 15 });
      const trees = new Map<number, number[]>();
      for (const pid of harness.pool.pids) trees.set(pid, await processTree([pid]));
      const err = await harness.client.redoPage(unary(poisonedInsertRequest("tenant-a"))).catch((e: unknown) => ConnectError.from(e));
      expect(err).toBeInstanceOf(ConnectError);
      expect((err as ConnectError).code).toBe(Code.InvalidArgument);
      expect((err as ConnectError).rawMessage).toMatch(/killed two walredo processes/);
      await eventually(() => [...trees.keys()].some((p) => !harness.pool.pids.includes(p)));
      const replaced = [...trees.keys()].filter((p) => !harness.pool.pids.includes(p));
      await eventually(async () => (await stillRunning(replaced.flatMap((p) => trees.get(p)!))).length === 0);
      const { page } = await harness.client.redoPage(unary(pageCaseRequest(workload, cases[1]!)));
      expect(page.length).toBe(8192);
    });

    it("replaces a process killed from outside and leaves no zombie", async () => {
      await harness.client.ping({ tenantId: "tenant-k", pgMajor: 15 });
      const pids = harness.pool.pids;
      const tree = await processTree(pids);
      for (const pid of pids) process.kill(pid, "SIGKILL");
      await eventually(() => harness.pool.pids.every((p) => !pids.includes(p)));
      await eventually(async () => (await stillRunning(tree)).length === 0);
      const { page } = await harness.client.redoPage(unary(pageCaseRequest(workload, cases[2]!, { tenantId: "tenant-k" })));
      expect(page.length).toBe(8192);
    });
  });

  describe("validation", () => {
    let harness: WalRedoHarness;
    beforeAll(async () => {
      harness = await startWalRedoHarness({});
    });
    afterAll(async () => {
      await harness?.close();
    });

    /** The block of cases[0], as the walredo protocol names it. */
    function tagOf(c: PageCase): BufferTag {
      return { forkNumber: 0, spcNode: workload.spcOid, dbNode: workload.dbOid, relNode: c.relation.relNumber, blockNumber: c.blockNumber };
    }

    /** cases[0]'s request with its first record replaced. */
    function withFirstRecord(record: Uint8Array, endLsn = cases[0]!.records[0]!.endLsn): RedoRequest {
      return pageCaseRequest(workload, cases[0]!, { records: [{ endLsn, record }, ...cases[0]!.records.slice(1)] });
    }

    /** cases[0]'s first record with byte `at` set to `value` and the CRC made to match again. */
    function patchedFirstRecord(at: number, value: number): Uint8Array {
      const record = Uint8Array.from(cases[0]!.records[0]!.record);
      record[at] = value;
      new DataView(record.buffer).setUint32(XLOG_RECORD_CRC_OFFSET, computeRecordCrc(record), true);
      return record;
    }

    /** Sends the request as RedoPage: INVALID_ARGUMENT with `message`, and the pool has spawned and lost no process. */
    async function expectRefusedWithoutAProcess(request: RedoRequest, message: RegExp): Promise<void> {
      const err = await harness.client.redoPage(unary(request)).then(() => undefined, (e: unknown) => ConnectError.from(e));
      expect(err?.code).toBe(Code.InvalidArgument);
      expect(err?.rawMessage).toMatch(message);
      expect(harness.pool.stats).toMatchObject({ processes: 0, spawns: 0, exits: 0 });
    }

    it("refuses a record whose CRC does not match, spawning and killing no process", async () => {
      const record = Uint8Array.from(cases[0]!.records[0]!.record);
      record[record.length - 1]! ^= 0xff;
      await expectRefusedWithoutAProcess(withFirstRecord(record), /records\[0\] \(end_lsn \d+, rmgr \w+\) fails its CRC check \(stored 0x[0-9a-f]+, computed 0x[0-9a-f]+\)/);
    });

    const HEAP = 10;
    const refused: [string, () => RedoRequest, RegExp][] = [
      ["a record of a resource manager that changes no page", () => withFirstRecord(patchedFirstRecord(17, 1)), /records\[0\] .*rmgr Transaction\) with info 0x[0-9a-f]+ does not change relation pages/],
      ["an XLOG record that is not a full-page image", () => withFirstRecord(craftRecord(0, 0x00, tagOf(cases[0]!), new Uint8Array(0), new Uint8Array(0))), /rmgr XLOG\) with info 0x0 does not change relation pages/],
      ["a block reference to a fork that does not exist", () => withFirstRecord(craftBlocksRecord(HEAP, 0, [{ tag: { ...tagOf(cases[0]!), forkNumber: 5 } }], new Uint8Array(0))), /block reference 0 has fork number 5; forks are 0\.\.3/],
      ["a block reference beyond MaxBlockNumber", () => withFirstRecord(craftBlocksRecord(HEAP, 0, [{ tag: tagOf(cases[0]!) }, { tag: { ...tagOf(cases[0]!), blockNumber: 0xfffffffe } }], new Uint8Array(0))), /block reference 1 has block number 4294967294, beyond MaxBlockNumber/],
      ["two references to one block", () => withFirstRecord(craftBlocksRecord(HEAP, 0, [{ tag: tagOf(cases[0]!) }, { tag: tagOf(cases[0]!) }], new Uint8Array(0))), /block reference 1 names a block an earlier reference of the record names too/],
      ["a full-page image whose hole runs past the page", () => withFirstRecord(craftBlocksRecord(0, 0xb0, [{ tag: tagOf(cases[0]!), image: { bytes: new Uint8Array(8000), holeOffset: 8100 } }], new Uint8Array(0))), /not a valid XLogRecord: block 0: an image of 8000 bytes with a hole of 192 bytes at 8100 does not fit a 8192-byte page/],
      ["an end LSN the scratch cluster has not reached", () => withFirstRecord(cases[0]!.records[0]!.record, 0x7fffffff00000000n), /records\[0\]\.end_lsn 7FFFFFFF\/00000000 is not below 7FFFFFFF\/00000000/],
      ["a base image whose page header pointers are out of order", () => {
        const page = new Uint8Array(8192);
        new DataView(page.buffer).setUint16(12, 24, true);
        new DataView(page.buffer).setUint16(14, 9000, true);
        new DataView(page.buffer).setUint16(16, 8192, true);
        new DataView(page.buffer).setUint16(18, 8192 | 4, true);
        return pageCaseRequest(workload, cases[0]!, { baseImage: page });
      }, /base_image of .* is not a valid page: pd_lower 24, pd_upper 9000, pd_special 8192 are not in order within the page/],
      ["a base image of another page size", () => {
        const page = Uint8Array.from(cases[0]!.finalPage);
        new DataView(page.buffer).setUint16(18, 4096 | 4, true);
        return pageCaseRequest(workload, cases[0]!, { baseImage: page });
      }, /base_image of .* is not a valid page: page size and layout 0x1004 are not 8192 and 4/],
      ["a base image without a header that is not all zeroes", () => {
        const page = new Uint8Array(8192);
        page[8000] = 1;
        return pageCaseRequest(workload, cases[0]!, { baseImage: page });
      }, /base_image of .* is neither a new \(all-zero\) page nor has a page header/],
    ];
    it.each(refused)("refuses %s, spawning and killing no process", async (_, request, message) => {
      await expectRefusedWithoutAProcess(request(), message);
    });
  });

  it("gives each tenant its own processes and shares one spawn among concurrent first requests", async () => {
    await withWalRedoHarness({ pipelineDepth: 64 }, async (harness) => {
      await Promise.all(cases.slice(0, 6).map((c) => harness.client.redoPage(unary(pageCaseRequest(workload, c, { tenantId: "tenant-x" })))));
      expect(harness.pool.stats).toMatchObject({ processes: 1, tenants: 1 });
      await harness.client.redoPage(unary(pageCaseRequest(workload, cases[0]!, { tenantId: "tenant-y" })));
      expect(harness.pool.stats).toMatchObject({ processes: 2, tenants: 2 });
    });
  });

  it("kills a process that does not answer within the request timeout and answers from a fresh one", async () => {
    await withWalRedoHarness({ requestTimeoutMs: 2_000 }, async (harness) => {
      await harness.client.ping({ tenantId: "tenant-t", pgMajor: 15 });
      const tree = await processTree(harness.pool.pids);
      for (const pid of tree) process.kill(pid, "SIGSTOP");
      const c = cases[0]!;
      const { page } = await harness.client.redoPage(unary(pageCaseRequest(workload, c, { tenantId: "tenant-t" })));
      expect(maskPage(c.relation.kind, page, c.blockNumber).equals(maskPage(c.relation.kind, c.finalPage, c.blockNumber))).toBe(true);
      await eventually(async () => (await stillRunning(tree)).length === 0);
      expect(harness.pool.pids.some((p) => tree.includes(p))).toBe(false);
    });
  });

  it("keeps a tenant's retry process for its later retries instead of leaking it and starting another", async () => {
    await withWalRedoHarness({}, async (harness) => {
      /** A request whose process is killed while it works on it: answered by the retry. */
      const answerAfterAKill = async (c: PageCase): Promise<void> => {
        const [shared] = harness.pool.pids.filter((p) => p !== retry);
        const tree = await processTree([shared!]);
        for (const pid of tree) process.kill(pid, "SIGSTOP");
        const answered = harness.client.redoPage(unary(pageCaseRequest(workload, c, { tenantId: "tenant-r" })));
        await eventually(() => harness.pool.stats.inFlight === 1);
        for (const pid of tree) process.kill(pid, "SIGKILL");
        const { page } = await answered;
        expect(maskPage(c.relation.kind, page, c.blockNumber).equals(maskPage(c.relation.kind, c.finalPage, c.blockNumber))).toBe(true);
        await eventually(() => !harness.pool.pids.includes(shared!));
      };
      let retry: number | undefined;
      await harness.client.ping({ tenantId: "tenant-r", pgMajor: 15 });
      await answerAfterAKill(cases[0]!);
      expect(harness.pool.stats).toMatchObject({ processes: 1, tenants: 1, spawns: 2 });
      [retry] = harness.pool.pids;
      await harness.client.ping({ tenantId: "tenant-r", pgMajor: 15 });
      await answerAfterAKill(cases[1]!);
      expect(harness.pool.stats).toMatchObject({ processes: 1, tenants: 1, spawns: 3 });
      expect(harness.pool.pids).toEqual([retry]);
    });
  });

  it("starts more processes for a tenant under load, up to the per-tenant bound", async () => {
    await withWalRedoHarness({ pipelineDepth: 1, maxProcessesPerTenant: 3 }, async (harness) => {
      let most = 0;
      // A steady load: 16 requests in flight, a new one sent as each is answered.
      const sample = cases.slice(0, 200);
      let credits = 16;
      let wake: (() => void) | undefined;
      const requests = (async function* () {
        for (let i = 0; i < sample.length; i++) {
          while (credits === 0) await new Promise<void>((r) => (wake = r));
          credits--;
          yield pageCaseRequest(workload, sample[i]!, { requestId: BigInt(i), tenantId: "tenant-busy" });
        }
      })();
      for await (const response of harness.client.redo(requests)) {
        pageOf(response);
        most = Math.max(most, harness.pool.stats.processes);
        credits++;
        wake?.();
      }
      // Growth is started by the load and does not hold requests up; the new processes join when ready.
      await eventually(() => harness.pool.stats.processes > 1);
      expect(Math.max(most, harness.pool.stats.processes)).toBeLessThanOrEqual(3);
    });
  });

  it("answers RESOURCE_EXHAUSTED when every process stays busy at the global cap for the queue timeout", async () => {
    await withWalRedoHarness({ maxProcesses: 1, maxProcessesPerTenant: 1, queueTimeoutMs: 300 }, async (harness) => {
      await harness.client.ping({ tenantId: "tenant-1", pgMajor: 15 });
      const tree = await processTree(harness.pool.pids);
      for (const pid of tree) process.kill(pid, "SIGSTOP");
      const stuck = harness.client.redoPage(unary(pageCaseRequest(workload, cases[0]!, { tenantId: "tenant-1" }))).catch((e: unknown) => e);
      await eventually(() => harness.pool.stats.inFlight === 1);
      const err = await harness.client.ping({ tenantId: "tenant-2", pgMajor: 15 }).catch((e: unknown) => ConnectError.from(e));
      expect(err).toMatchObject({ code: Code.ResourceExhausted, rawMessage: expect.stringMatching(/all 1 walredo processes are busy \(--max-processes 1\) and none became free within 300 ms \(--queue-timeout-ms\)/) });
      expect(harness.pool.stats).toMatchObject({ processes: 1, waiting: 0, spawns: 1 });
      for (const pid of tree) process.kill(pid, "SIGCONT");
      await stuck;
    });
  });

  it("never has more live processes than --max-processes while 40 new tenants arrive at once, and serves them all", async () => {
    await withWalRedoHarness({ maxProcesses: 4, maxProcessesPerTenant: 1, queueTimeoutMs: 120_000 }, async (harness) => {
      // The cap is full of idle processes: each new tenant needs one evicted or freed.
      await Promise.all(["idle-1", "idle-2", "idle-3", "idle-4"].map((tenantId) => harness.client.ping({ tenantId, pgMajor: 15 })));
      const countChildren = walredoChildCounter();
      let mostInPool = 0;
      let mostInOs = 0;
      const poolSampler = setInterval(() => {
        mostInPool = Math.max(mostInPool, harness.pool.stats.processes);
      }, 1);
      let sampling = true;
      const osSampler = (async () => {
        while (sampling) mostInOs = Math.max(mostInOs, await countChildren());
      })();
      const sample = Array.from({ length: 40 }, (_, i) => cases[i % cases.length]!);
      const results = await Promise.allSettled(sample.map((c, i) => harness.client.redoPage(unary(pageCaseRequest(workload, c, { tenantId: `tenant-cap-${i}` })))));
      sampling = false;
      clearInterval(poolSampler);
      await osSampler;
      mostInOs = Math.max(mostInOs, await countChildren());
      expect(mostInOs).toBeGreaterThan(0);
      expect(mostInPool).toBeLessThanOrEqual(4);
      expect(mostInOs).toBeLessThanOrEqual(4);
      const failures = results.flatMap((r, i) => (r.status === "rejected" ? [`tenant-cap-${i}: ${ConnectError.from(r.reason).message}`] : []));
      expect(failures).toEqual([]);
      results.forEach((r, i) => {
        const c = sample[i]!;
        const page = (r as PromiseFulfilledResult<{ page: Uint8Array }>).value.page;
        expect(maskPage(c.relation.kind, page, c.blockNumber).equals(maskPage(c.relation.kind, c.finalPage, c.blockNumber))).toBe(true);
      });
    });
  }, 180_000);

  it("logs each process's stderr lines with the tenant and pid", async () => {
    const lines: { tenant?: string; redoPid?: number; stderr?: string }[] = [];
    const logger = pino({ level: "info" }, { write: (line: string) => void lines.push(JSON.parse(line)) });
    await withWalRedoHarness({ logger }, async (harness) => {
      await harness.client.redoPage(unary(poisonedInsertRequest("tenant-log"))).catch(() => undefined);
      const stderr = lines.filter((l) => l.stderr !== undefined);
      expect(stderr.some((l) => l.tenant === "tenant-log" && typeof l.redoPid === "number" && /PANIC|FATAL|ERROR/.test(l.stderr!))).toBe(true);
    });
  });

  it("kills a process after the idle timeout", async () => {
    await withWalRedoHarness({ idleTimeoutMs: 1_500 }, async (harness) => {
      await harness.client.ping({ tenantId: "tenant-i", pgMajor: 15 });
      expect(harness.pool.pids.length).toBe(1);
      const tree = await processTree(harness.pool.pids);
      await eventually(() => harness.pool.pids.length === 0);
      expect(await stillRunning(tree)).toEqual([]);
    });
  });

  it("evicts another tenant's idle process at the global cap", async () => {
    await withWalRedoHarness({ maxProcesses: 1, maxProcessesPerTenant: 1 }, async (harness) => {
      await harness.client.ping({ tenantId: "tenant-1", pgMajor: 15 });
      const [first] = harness.pool.pids;
      const firstTree = await processTree([first!]);
      await harness.client.ping({ tenantId: "tenant-2", pgMajor: 15 });
      await eventually(async () => (await stillRunning(firstTree)).length === 0);
      await eventually(() => harness.pool.stats.processes === 1);
      expect(harness.pool.pids).not.toContain(first);
    });
  });

  it("leaves no process behind after shutdown", async () => {
    const harness = await startWalRedoHarness({});
    await Promise.all(["s1", "s2", "s3"].map((t) => harness.client.ping({ tenantId: t, pgMajor: 15 })));
    expect(harness.pool.pids.length).toBe(3);
    const tree = await processTree(harness.pool.pids);
    await harness.close();
    expect(await stillRunning(tree)).toEqual([]);
    await expect(harness.pool.ping("s1", 15)).rejects.toThrow(/shutting down/);
  });
});
