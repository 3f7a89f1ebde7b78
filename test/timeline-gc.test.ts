import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { openBlobStore, type BlobStore } from "../src/blob/index.js";
import {
  claimNextGeneration, createTimelineMeta, fileChunkKey, planRestore, putWalChunk, resolveHistory, writeGenerationStart,
  writeSnapshotManifest, type TimelineRef,
} from "../src/timeline/index.js";
import { compileTimelineCtlOptions, TimelineCtl } from "../src/timelinectl/index.js";

const segmentBytes = 1024 * 1024;
const day = 86_400_000;
const tenantId = "tenant1";
const main: TimelineRef = { tenantId, timelineId: "main" };

let root: string;
let store: BlobStore;

async function putFileChunk(hash: string): Promise<void> {
  await store.put(fileChunkKey(tenantId, hash), (async function* () { yield Buffer.from(hash); })());
}

async function snapshot(generation: number, redo: number, daysAgo: number, hashes: string[]): Promise<void> {
  for (const hash of hashes) await putFileChunk(hash);
  await writeSnapshotManifest(store, main, generation, {
    kind: "shutdown", redoLsn: BigInt(redo), checkpointLsn: BigInt(redo), endLsn: BigInt(redo + 0x100), pgMajor: 15, pgTli: 1,
    systemIdentifier: "1", createdAt: new Date(Date.now() - daysAgo * day).toISOString(), backupLabel: null, chunkBytes: 1024,
    files: [{ path: "base/1/1259", size: hashes.length * 1024, mode: 0o600, chunks: hashes }], emptyDirs: [],
  });
}

async function wal(generation: number, from: number, to: number): Promise<void> {
  await putWalChunk(store, main, { startLsn: BigInt(from), generation, segmentBytes, bytes: Buffer.alloc(to - from, generation) });
}

const hash = (n: number): string => n.toString(16).padStart(64, "0");

/**
 * Generation 1 wrote 0x100000..0x300800 with snapshots made 10, 8 and 1 days
 * ago; generation 2 took over at 0x2C0000, so generation 1's chunk at
 * 0x300000 is a fenced primary's late write. File chunk 9 belongs to no snapshot.
 */
beforeEach(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), "pgmesh-gc-"));
  store = await openBlobStore(pathToFileURL(root).href);
  await createTimelineMeta(store, { ...main, pgMajor: 15, pgTli: 1, walSegmentBytes: segmentBytes, createdAt: new Date(), ancestor: null });
  await claimNextGeneration(store, main, "one");
  await writeGenerationStart(store, main, 1, 0x100000n);
  await wal(1, 0x100000, 0x180000);
  await wal(1, 0x180000, 0x200000);
  await wal(1, 0x200000, 0x280000);
  await wal(1, 0x280000, 0x300000);
  await snapshot(1, 0x100100, 10, [hash(1), hash(2)]);
  await snapshot(1, 0x200100, 8, [hash(2), hash(3)]);
  await snapshot(1, 0x280100, 1, [hash(3), hash(4)]);
  await claimNextGeneration(store, main, "two");
  await writeGenerationStart(store, main, 2, 0x2c0000n);
  await wal(2, 0x2c0000, 0x300000);
  await wal(1, 0x300000, 0x300800);
  await putFileChunk(hash(9));
});

afterEach(async () => {
  await store.close();
  await rm(root, { recursive: true, force: true });
});

describe("Timeline garbage collection", () => {
  it("keeps the newest snapshot older than the retention window and all after it; deletes older WAL and snapshots, fenced WAL and unnamed file chunks", async () => {
    const ctl = new TimelineCtl(store, compileTimelineCtlOptions({ pitrRetentionMs: 7 * day, fileChunkGraceMs: 0 }));
    const report = await ctl.collectGarbage(tenantId, { dryRun: false });
    expect(report.walChunks).toEqual({ objects: 2, bytes: 0x100000 });
    expect(report.snapshots.objects).toBe(1);
    expect(report.deadWalChunks).toEqual({ objects: 1, bytes: 0x800 });
    expect(report.fileChunks.objects).toBe(2);
    expect(await store.head(fileChunkKey(tenantId, hash(1)))).toBeUndefined();
    expect(await store.head(fileChunkKey(tenantId, hash(2)))).toBeDefined();
    const history = await resolveHistory(store, main);
    expect(history.beginLsn).toBe(0x200000n);
    expect(history.durableEnd).toBe(0x300000n);
    expect(history.snapshots.map((s) => s.lsn)).toEqual([0x200200n, 0x280200n]);
    expect((await planRestore(store, main))!.snapshot.lsn).toBe(0x280200n);
  });

  it("deletes nothing on a dry run, and reports the same", async () => {
    const ctl = new TimelineCtl(store, compileTimelineCtlOptions({ pitrRetentionMs: 7 * day, fileChunkGraceMs: 0 }));
    const before = [];
    for await (const info of store.listAll("")) before.push(info.key);
    const report = await ctl.collectGarbage(tenantId, { dryRun: true });
    const after = [];
    for await (const info of store.listAll("")) after.push(info.key);
    expect(after).toEqual(before);
    expect(report.walChunks.objects).toBe(2);
  });

  it("keeps file chunks no snapshot names while they are younger than the grace period (a snapshot being taken)", async () => {
    const ctl = new TimelineCtl(store, compileTimelineCtlOptions({ pitrRetentionMs: 7 * day, fileChunkGraceMs: 3_600_000 }));
    const report = await ctl.collectGarbage(tenantId, { dryRun: false });
    expect(report.fileChunks.objects).toBe(0);
    expect(await store.head(fileChunkKey(tenantId, hash(9)))).toBeDefined();
  });

  it("keeps the snapshot and WAL a branch needs, however old", async () => {
    await createTimelineMeta(store, { tenantId, timelineId: "old-branch", pgMajor: 15, pgTli: 1, walSegmentBytes: segmentBytes, createdAt: new Date(), ancestor: { timelineId: "main", lsn: 0x180010n } });
    const ctl = new TimelineCtl(store, compileTimelineCtlOptions({ pitrRetentionMs: 7 * day, fileChunkGraceMs: 0 }));
    const report = await ctl.collectGarbage(tenantId, { dryRun: false });
    expect(report.walChunks.objects).toBe(0);
    const branch = await resolveHistory(store, { tenantId, timelineId: "old-branch" });
    expect(branch.durableEnd).toBe(0x180010n);
    expect(branch.snapshots.map((s) => s.lsn)).toEqual([0x100200n]);
  });
});
