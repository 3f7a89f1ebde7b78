import { mkdtemp, mkdir, readFile, rm, writeFile, utimes } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openBlobStore, type BlobStore } from "../src/blob/index.js";
import {
  claimNextGeneration, createTimelineMeta, layDownPgdataFiles, listGenerations, planRestore, putWalChunk,
  readSnapshotManifest, readWalChunk, resolveHistory, successorOf, uploadPgdataFiles, writeGenerationStart, writeSnapshotManifest,
  type TimelineMeta, TimelineError,
} from "../src/timeline/index.js";
import { startS3rver, type S3rverHandle } from "./helpers/s3rver.js";

const segmentBytes = 16 * 1024 * 1024;

interface Backend {
  readonly name: string;
  open(prefix: string): Promise<BlobStore>;
}

let s3rver: S3rverHandle | undefined;
let localRoot: string;

const backends: Backend[] = [
  { name: "local directory", open: (prefix) => openBlobStore(pathToFileURL(path.join(localRoot, prefix)).href) },
  { name: "S3 (s3rver)", open: (prefix) => openBlobStore(s3rver!.url(prefix), s3rver!.blobStoreOptions) },
];

beforeAll(async () => {
  localRoot = await mkdtemp(path.join(tmpdir(), "pgmesh-timeline-"));
  s3rver = await startS3rver();
});

afterAll(async () => {
  await s3rver?.stop();
  await rm(localRoot, { recursive: true, force: true });
});

let counter = 0;
function meta(): TimelineMeta {
  counter += 1;
  return { tenantId: "tenant1", timelineId: `tl${counter}`, pgMajor: 15, pgTli: 1, walSegmentBytes: segmentBytes, createdAt: new Date(), ancestor: null };
}

function walBytes(length: number, seed: number): Buffer {
  const bytes = Buffer.alloc(length);
  for (let i = 0; i < length; i++) bytes[i] = (i * 7 + seed) & 0xff;
  return bytes;
}

async function expectTimelineError(promise: Promise<unknown>, code: Code, keyPart: string): Promise<void> {
  const err = await promise.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(TimelineError);
  expect((err as TimelineError).code).toBe(code);
  expect((err as TimelineError).message).toContain(keyPart);
  expect(err).toBeInstanceOf(ConnectError);
}

describe.each(backends)("Timeline store on $name", (backend) => {
  let store: BlobStore;
  beforeAll(async () => {
    store = await backend.open(`run-${backend.name.length}`);
  });
  afterAll(async () => {
    await store.close();
  });

  it("gives one generation number to exactly one of several computes claiming it at once", async () => {
    const ref = await createTimelineMeta(store, meta());
    const results = await Promise.allSettled(Array.from({ length: 4 }, (_, i) => claimNextGeneration(store, ref, `compute-${i}`)));
    const won = results.filter((r) => r.status === "fulfilled");
    expect(won.length).toBeGreaterThanOrEqual(1);
    expect(new Set(won.map((r) => r.value.generation)).size).toBe(won.length);
    for (const lost of results.filter((r) => r.status === "rejected")) {
      expect(String(lost.reason)).toMatch(/already has a primary starting \(generation \d+, compute compute-\d\)/);
    }
  });

  it("creates a timeline once: a second creator gets the first one's timeline.json", async () => {
    const first = meta();
    await createTimelineMeta(store, first);
    const second = await createTimelineMeta(store, { ...first, walSegmentBytes: 1024 * 1024 });
    expect(second.walSegmentBytes).toBe(segmentBytes);
  });

  it("hands out generation numbers in order and tells a primary when it is fenced", async () => {
    const ref = await createTimelineMeta(store, meta());
    const a = await claimNextGeneration(store, ref, "compute-a");
    expect(await successorOf(store, ref, a.generation)).toBeUndefined();
    const b = await claimNextGeneration(store, ref, "compute-b");
    expect(b.generation).toBe(a.generation + 1);
    expect((await successorOf(store, ref, a.generation))?.computeId).toBe("compute-b");
  });

  it("reads a WAL chunk back and names the chunk when it is corrupt or truncated", async () => {
    const ref = await createTimelineMeta(store, meta());
    const chunk = await putWalChunk(store, ref, { startLsn: 0x1000000n, generation: 1, bytes: walBytes(1000, 1), segmentBytes });
    expect(await readWalChunk(store, chunk)).toEqual(walBytes(1000, 1));
    await store.put(chunk.key, (async function* () { yield walBytes(1000, 2); })());
    await expectTimelineError(readWalChunk(store, chunk), Code.DataLoss, chunk.key);
    await store.put(chunk.key, (async function* () { yield walBytes(999, 1); })());
    await expectTimelineError(readWalChunk(store, chunk), Code.DataLoss, chunk.key);
  });

  it("ends the history at a gap and drops chunks a fenced generation wrote past its successor's start", async () => {
    const ref = await createTimelineMeta(store, meta());
    const base = 0x1000000n;
    await claimNextGeneration(store, ref, "a");
    await writeGenerationStart(store, ref, 1, base);
    await putWalChunk(store, ref, { startLsn: base, generation: 1, bytes: walBytes(100, 1), segmentBytes });
    await putWalChunk(store, ref, { startLsn: base + 100n, generation: 1, bytes: walBytes(100, 2), segmentBytes });
    expect((await resolveHistory(store, ref)).durableEnd).toBe(base + 200n);
    // Generation 2 restored to base+150 and writes from there; generation 1 keeps writing, fenced.
    await claimNextGeneration(store, ref, "b");
    await writeGenerationStart(store, ref, 2, base + 150n);
    await putWalChunk(store, ref, { startLsn: base + 200n, generation: 1, bytes: walBytes(100, 3), segmentBytes });
    await putWalChunk(store, ref, { startLsn: base + 150n, generation: 2, bytes: walBytes(30, 4), segmentBytes });
    const history = await resolveHistory(store, ref);
    expect(history.durableEnd).toBe(base + 180n);
    expect(history.pieces.map((p) => [p.chunk.generation, p.from - base, p.to - base])).toEqual([[1, 0n, 100n], [1, 100n, 150n], [2, 150n, 180n]]);
    // A gap: a chunk past the end does not extend it.
    await putWalChunk(store, ref, { startLsn: base + 190n, generation: 2, bytes: walBytes(10, 5), segmentBytes });
    expect((await resolveHistory(store, ref)).durableEnd).toBe(base + 180n);
    expect((await listGenerations(store, ref)).highest).toBe(2);
  });

  it("stores each file chunk once and lays down only the files that changed", async () => {
    const ref = await createTimelineMeta(store, meta());
    const src = await mkdtemp(path.join(tmpdir(), "pgmesh-timeline-src-"));
    const dst = await mkdtemp(path.join(tmpdir(), "pgmesh-timeline-dst-"));
    try {
      await mkdir(path.join(src, "base/1"), { recursive: true });
      await mkdir(path.join(src, "pg_wal"), { recursive: true });
      await writeFile(path.join(src, "base/1/1259"), walBytes(3 * 1024 * 1024 + 5, 9));
      await writeFile(path.join(src, "base/1/1249"), walBytes(10, 1));
      await writeFile(path.join(src, "postmaster.pid"), "123");
      await writeFile(path.join(src, "pg_wal/000000010000000000000001"), "wal");
      const first = await uploadPgdataFiles(store, ref, src, { concurrency: 4, chunkBytes: 1024 * 1024 });
      expect(first.files.map((f) => f.path)).toEqual(["base/1/1249", "base/1/1259"]);
      expect(first.files[1]!.chunks).toHaveLength(4);
      expect(first.emptyDirs).toContain("pg_wal");
      const again = await uploadPgdataFiles(store, ref, src, { concurrency: 4, chunkBytes: 1024 * 1024 });
      expect(again.bytesPut).toBe(0);
      const snapshot = await writeSnapshotManifest(store, ref, 1, {
        kind: "shutdown", redoLsn: 0x1000028n, checkpointLsn: 0x1000028n, endLsn: 0x10000a0n, pgMajor: 15, pgTli: 1,
        systemIdentifier: "1", createdAt: new Date().toISOString(), backupLabel: null, chunkBytes: 1024 * 1024,
        files: first.files, emptyDirs: first.emptyDirs,
      });
      const manifest = await readSnapshotManifest(store, snapshot);
      const cache = await layDownPgdataFiles(store, ref, manifest, dst, { concurrency: 4 });
      // equals(), not toEqual: vitest compares big buffers byte by byte, slowly.
      expect((await readFile(path.join(dst, "base/1/1259"))).equals(walBytes(3 * 1024 * 1024 + 5, 9))).toBe(true);
      // A local file changed since (newer mtime) is laid down again; an unchanged one is kept as it is.
      await writeFile(path.join(dst, "base/1/1249"), "changed locally");
      await writeFile(path.join(dst, "stray"), "not in the snapshot");
      await utimes(path.join(dst, "base/1/1249"), new Date(), new Date(Date.now() + 5000));
      await layDownPgdataFiles(store, ref, manifest, dst, { concurrency: 4, cache });
      expect(await readFile(path.join(dst, "base/1/1249"))).toEqual(walBytes(10, 1));
      await expect(readFile(path.join(dst, "stray"))).rejects.toThrow();
      // A chunk missing from the store is named.
      const missing = `tenants/tenant1/files/${first.files[0]!.chunks[0]}`;
      await store.delete(missing);
      await expectTimelineError(layDownPgdataFiles(store, ref, manifest, dst, { concurrency: 4 }), Code.NotFound, missing);
    } finally {
      await rm(src, { recursive: true, force: true });
      await rm(dst, { recursive: true, force: true });
    }
  });

  it("plans no restore for a timeline without WAL and refuses one whose WAL has no snapshot", async () => {
    const ref = await createTimelineMeta(store, meta());
    expect(await planRestore(store, ref)).toBeUndefined();
    await claimNextGeneration(store, ref, "a");
    await writeGenerationStart(store, ref, 1, 0x1000000n);
    await putWalChunk(store, ref, { startLsn: 0x1000000n, generation: 1, bytes: walBytes(100, 1), segmentBytes });
    await expectTimelineError(planRestore(store, ref), Code.DataLoss, "no usable snapshot");
  });
});
