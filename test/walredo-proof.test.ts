import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RedoRequest, type RedoResponse } from "../gen/pgmesh/walredo/v1/walredo_pb.js";
import { pageCaseRequest, processTree, stillRunning, startWalRedoHarness, type WalRedoHarness } from "./walredo-harness.js";
import { maskPage } from "./walredo-page-mask.js";
import { buildPageCases, runWalWorkload, type PageCase, type WalWorkload } from "./walredo-workload.js";

/** Sends every request on one Redo stream and returns the pages by request id; fails on any error response. */
async function redoAll(harness: WalRedoHarness, requests: RedoRequest[]): Promise<Map<bigint, Uint8Array>> {
  const pages = new Map<bigint, Uint8Array>();
  const errors: string[] = [];
  const responses: AsyncIterable<RedoResponse> = harness.client.redo((async function* () {
    yield* requests;
  })());
  for await (const response of responses) {
    if (response.result.case === "page") pages.set(response.requestId, response.result.value);
    else errors.push(`request ${response.requestId}: ${response.result.value?.message}`);
  }
  expect(errors).toEqual([]);
  return pages;
}

function firstDifference(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

describe("WalRedo against real PostgreSQL 15 WAL", () => {
  let workload: WalWorkload;
  let cases: PageCase[];
  let harness: WalRedoHarness;

  beforeAll(async () => {
    [workload, harness] = await Promise.all([
      runWalWorkload({ pgbenchScale: 1, pgbenchTransactions: 300 }),
      startWalRedoHarness({ maxProcessesPerTenant: 2 }),
    ]);
    cases = await buildPageCases(workload);
  });

  afterAll(async () => {
    await harness?.close();
    await workload?.cleanup();
  });

  it("rebuilds every heap, btree and GIN page touched after the base exactly as Postgres wrote it (under Postgres's masks)", async () => {
    const kinds = new Set(cases.map((c) => c.relation.kind));
    expect([...kinds].sort()).toEqual(["btree", "gin", "heap"]);
    // Round 1: each page from its base image (or from the record that initialises it) through the first half of its records.
    const split = cases.map((c) => Math.max(1, Math.floor(c.records.length / 2)));
    const first = await redoAll(harness, cases.map((c, i) => pageCaseRequest(workload, c, { requestId: BigInt(i), records: c.records.slice(0, split[i]) })));
    // Round 2: the rest of the records on the page from round 1 as base image.
    const secondIds: number[] = [];
    const secondRequests: RedoRequest[] = [];
    cases.forEach((c, i) => {
      if (split[i]! >= c.records.length) return;
      secondIds.push(i);
      secondRequests.push(pageCaseRequest(workload, c, { requestId: BigInt(i), records: c.records.slice(split[i]), baseImage: first.get(BigInt(i)) }));
    });
    expect(secondRequests.length).toBeGreaterThan(500);
    const second = await redoAll(harness, secondRequests);
    // The comparison can tell pages apart: a page after half its records differs from the final page.
    const halfwayDiffers = secondIds.filter((i) => {
      const c = cases[i]!;
      return !maskPage(c.relation.kind, first.get(BigInt(i))!, c.blockNumber).equals(maskPage(c.relation.kind, c.finalPage, c.blockNumber));
    });
    expect(halfwayDiffers.length).toBeGreaterThan(secondIds.length * 0.9);
    const mismatches: string[] = [];
    cases.forEach((c, i) => {
      const rebuilt = second.get(BigInt(i)) ?? first.get(BigInt(i))!;
      const want = maskPage(c.relation.kind, c.finalPage, c.blockNumber);
      const got = maskPage(c.relation.kind, rebuilt, c.blockNumber);
      if (!want.equals(got)) {
        mismatches.push(`${c.relation.kind} ${c.relation.name} block ${c.blockNumber} (${c.records.length} records): first difference at byte ${firstDifference(want, got)}`);
      }
    });
    expect(mismatches.slice(0, 20)).toEqual([]);
    expect(cases.length).toBeGreaterThan(1000);
  });

  it("leaves no walredo process behind after shutdown", async () => {
    expect(harness.pool.pids.length).toBeGreaterThan(0);
    const tree = await processTree(harness.pool.pids);
    await harness.pool.close();
    expect(await stillRunning(tree)).toEqual([]);
  });
});
