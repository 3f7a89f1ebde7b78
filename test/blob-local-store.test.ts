import { randomUUID } from "node:crypto";
import { mkdtemp, readdir, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { BlobKeyConflictError, BlobStoreUrlError, openBlobStore, spoolFilePath, type BlobStore } from "../src/blob/index.js";

async function* once(value: string): AsyncGenerator<Uint8Array> {
  yield new TextEncoder().encode(value);
}

describe("local directory blob store", () => {
  let dir: string;
  let store: BlobStore;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "pgmesh-blob-local-"));
    store = await openBlobStore(pathToFileURL(dir).href);
  });
  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("lists in S3's byte order, where a key with '-' sorts before a sibling directory", async () => {
    for (const key of ["p/a/1", "p/a-b", "p-x", "p/a.c"]) await store.put(key, once(key));
    const keys = (await store.list("")).items.map((item) => item.key);
    expect(keys).toEqual(["p-x", "p/a-b", "p/a.c", "p/a/1"]);
    const firstPage = await store.list("", { pageSize: 2 });
    const rest = await store.list("", { pageSize: 2, pageToken: firstPage.nextPageToken! });
    expect([...firstPage.items, ...rest.items].map((item) => item.key)).toEqual(keys);
  });

  it("refuses a key that is also a directory of other keys", async () => {
    await store.put("a/b/c", once("x"));
    await expect(store.put("a/b", once("y"))).rejects.toThrow(BlobKeyConflictError);
    await expect(store.put("a/b/c/d", once("y"))).rejects.toThrow(BlobKeyConflictError);
    expect((await store.list("")).items.map((item) => item.key)).toEqual(["a/b/c"]);
  });

  it("keeps spool files out of listings, and when opened removes an older version's stale one but not a live writer's", async () => {
    await store.put("kept", once("x"));
    const stale = join(dir, "tmp", `${randomUUID()}.part`);
    const inFlight = spoolFilePath(join(dir, "tmp"), "put");
    await writeFile(stale, "torn");
    await writeFile(inFlight, "in flight");
    const twoHoursAgo = new Date(Date.now() - 2 * 60 * 60 * 1000);
    await utimes(stale, twoHoursAgo, twoHoursAgo);
    const reopened = await openBlobStore(pathToFileURL(dir).href);
    expect((await reopened.list("")).items.map((item) => item.key)).toEqual(["kept"]);
    expect(await readdir(join(dir, "tmp"))).toEqual([basename(inFlight)]);
  });

  it("removes directories that a delete leaves empty", async () => {
    await store.put("t/1/2/3", once("x"));
    await store.put("t/9", once("x"));
    await store.deletePrefix("t/1/");
    expect(await readdir(join(dir, "objects", "t"))).toEqual(["9"]);
    await store.delete("t/9");
    expect(await readdir(join(dir, "objects"))).toEqual([]);
  });
});

describe("openBlobStore", () => {
  it.each([
    ["not a url", "it is not a URL"],
    ["file://host/dir", "a file URL has no host"],
    ["s3:///prefix", "it names no bucket"],
    ["s3://bucket/a//b", "empty"],
    ["ftp://x/y", 'the scheme "ftp:" is not supported'],
  ])("rejects %j", async (url, reason) => {
    await expect(openBlobStore(url)).rejects.toThrow(BlobStoreUrlError);
    await expect(openBlobStore(url)).rejects.toThrow(reason);
  });
});
