import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { openBlobStore, type BlobStore } from "../src/blob/index.js";
import { endpointArchive } from "../src/epufs/index.js";
import { content, untar } from "./helpers/epufs-calls.js";

describe("Epufs endpoint archive stream", () => {
  let dir: string;
  let store: BlobStore;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "pgmesh-archive-"));
    store = await openBlobStore(pathToFileURL(dir).href);
  });
  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** The store, with a count of the bytes read from object bodies so far. */
  function counting(): { store: BlobStore; read: () => number } {
    let read = 0;
    const wrapped: BlobStore = Object.create(store) as BlobStore;
    wrapped.get = async (key, options) => {
      const object = await store.get(key, options);
      return {
        info: object.info,
        body: (async function* () {
          for await (const chunk of object.body) {
            read += chunk.byteLength;
            yield chunk;
          }
        })(),
      };
    };
    return { store: wrapped, read: () => read };
  }

  it("reads files only as fast as a slow consumer takes the tar (backpressure)", async () => {
    const big = content(8 * 1024 * 1024, 1);
    await store.put("e/pgdata/autoprewarm.blocks", (async function* () {
      for (let offset = 0; offset < big.length; offset += 1024 * 1024) yield big.subarray(offset, offset + 1024 * 1024);
    })());
    const source = counting();
    let received = 0;
    let maxAhead = 0;
    const parts: Uint8Array[] = [];
    for await (const chunk of endpointArchive(source.store, "e/pgdata/")) {
      received += chunk.byteLength;
      parts.push(chunk);
      maxAhead = Math.max(maxAhead, source.read() - received);
      // A slow consumer: without backpressure the reads would run megabytes ahead meanwhile.
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    expect(received).toBeGreaterThan(big.length);
    expect(maxAhead).toBeLessThan(2 * 1024 * 1024);
    const { files } = await untar(Buffer.concat(parts));
    expect(files.get("autoprewarm.blocks")!.equals(big)).toBe(true);
  });

  it("stops reading when the consumer stops early", async () => {
    await store.put("e/pgdata/a", (async function* () {
      yield content(4 * 1024 * 1024, 2);
    })());
    await store.put("e/pgdata/b", (async function* () {
      yield content(4 * 1024 * 1024, 3);
    })());
    const source = counting();
    for await (const chunk of endpointArchive(source.store, "e/pgdata/")) {
      expect(chunk.byteLength).toBeGreaterThan(0);
      break;
    }
    expect(source.read()).toBeLessThan(2 * 1024 * 1024);
  });

  it("fails the stream when a file's read fails, instead of ending a short archive", async () => {
    await store.put("e/pgdata/a", (async function* () {
      yield content(1024 * 1024, 4);
    })());
    const failing: BlobStore = Object.create(store) as BlobStore;
    failing.get = async (key, options) => {
      const object = await store.get(key, options);
      return {
        info: object.info,
        body: (async function* () {
          yield (await object.body[Symbol.asyncIterator]().next()).value as Uint8Array;
          throw new Error("disk read failed");
        })(),
      };
    };
    const consume = async () => {
      for await (const chunk of endpointArchive(failing, "e/pgdata/")) expect(chunk).toBeDefined();
    };
    await expect(consume()).rejects.toThrow("disk read failed");
  });
});
