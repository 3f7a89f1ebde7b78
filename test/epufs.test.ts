import { Code } from "@connectrpc/connect";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  connectErrorOf,
  content,
  endpointRef,
  getArchive,
  getFile,
  putFile,
  type EpufsClient,
} from "./helpers/epufs-calls.js";
import { startEpufsTestServer, type EpufsTestServer } from "./helpers/epufs-server.js";
import { startS3rver, type S3rverHandle } from "./helpers/s3rver.js";
import { createTestKeys, type TestKeys } from "./helpers/test-keys.js";

const T = "tenant1";
const TL = "timeline1";
const E = "ep-one";
const ep = endpointRef(T, TL, E);
const STATEMENTS = "pg_stat/pg_stat_statements.stat";
const PGSTAT = "pg_stat/pgstat.stat";
const PREWARM = "autoprewarm.blocks";

let keys: TestKeys;
let s3rver: S3rverHandle;

beforeAll(async () => {
  keys = await createTestKeys();
  s3rver = await startS3rver();
});
afterAll(async () => {
  await s3rver?.stop();
  await keys?.remove();
});

describe.each(["local directory", "S3 (s3rver)"])("Epufs over %s", (backend) => {
  let epufs: EpufsTestServer;
  let compute: EpufsClient;
  let controlPlane: EpufsClient;
  let computeToken: string;
  let controlPlaneToken: string;

  beforeEach(async () => {
    epufs = await startEpufsTestServer({
      keys,
      ...(backend.startsWith("S3") ? { s3rver } : {}),
      epufs: { maxFileBytes: 4 * 1024 * 1024, endpointQuotaBytes: 6 * 1024 * 1024 },
    });
    computeToken = await keys.computeToken(T, TL, E);
    controlPlaneToken = await keys.mint({ scope: "control_plane" });
    compute = epufs.client(computeToken);
    controlPlane = epufs.client(controlPlaneToken);
  });
  afterEach(() => epufs.close());

  describe("Epufs put and get", () => {
    it("round-trips a file streamed in chunks, with its info first", async () => {
      const data = content(200_000, 1);
      const stored = await putFile(compute, ep, STATEMENTS, data, { chunkBytes: 30_000 });
      expect(stored.path).toBe(STATEMENTS);
      expect(stored.size).toBe(200_000n);
      expect(stored.version).not.toBe("");
      const got = await getFile(compute, ep, STATEMENTS);
      expect(got.notModified).toBe(false);
      expect(got.info).toMatchObject({ path: STATEMENTS, size: 200_000n, version: stored.version });
      expect(timestampDate(got.info.modifiedTime!).getTime()).toBeGreaterThan(Date.now() - 60_000);
      expect(got.data.equals(data)).toBe(true);
    });

    it("streams a file larger than a message in chunks of at most 1 MiB", async () => {
      const data = content(3 * 1024 * 1024 + 5, 2);
      await putFile(compute, ep, PREWARM, data, { chunkBytes: 1024 * 1024 });
      const got = await getFile(compute, ep, PREWARM);
      expect(got.data.equals(data)).toBe(true);
      expect(got.chunkSizes.length).toBeGreaterThan(1);
      expect(Math.max(...got.chunkSizes)).toBeLessThanOrEqual(1024 * 1024);
    });

    it("stores an empty file", async () => {
      const stored = await putFile(compute, ep, PGSTAT, new Uint8Array(0));
      expect(stored.size).toBe(0n);
      expect((await getFile(compute, ep, PGSTAT)).data.length).toBe(0);
    });

    it("accepts a declared size that matches and refuses one that does not", async () => {
      await putFile(compute, ep, PGSTAT, content(1000, 3), { size: 1000 });
      const error = await connectErrorOf(putFile(compute, ep, PGSTAT, content(999, 4), { size: 1000 }));
      expect(error.code).toBe(Code.InvalidArgument);
      expect(error.rawMessage).toContain("announced as 1000 bytes but 999 arrived");
      expect((await getFile(compute, ep, PGSTAT)).data.equals(content(1000, 3))).toBe(true);
    });

    it("replaces a file atomically with a new version", async () => {
      const first = await putFile(compute, ep, STATEMENTS, content(5000, 5));
      const second = await putFile(compute, ep, STATEMENTS, content(7000, 6));
      expect(second.version).not.toBe(first.version);
      const got = await getFile(compute, ep, STATEMENTS);
      expect(got.info.version).toBe(second.version);
      expect(got.data.equals(content(7000, 6))).toBe(true);
    });

    it("answers not_modified with no chunks when if_none_match is the current version", async () => {
      const stored = await putFile(compute, ep, STATEMENTS, content(5000, 7));
      const cached = await getFile(compute, ep, STATEMENTS, stored.version);
      expect(cached.notModified).toBe(true);
      expect(cached.info.version).toBe(stored.version);
      expect(cached.chunkSizes).toEqual([]);
      const stale = await getFile(compute, ep, STATEMENTS, "some-older-version");
      expect(stale.notModified).toBe(false);
      expect(stale.data.equals(content(5000, 7))).toBe(true);
    });

    it("answers NOT_FOUND for a file that was never stored", async () => {
      const error = await connectErrorOf(getFile(compute, ep, PGSTAT));
      expect(error.code).toBe(Code.NotFound);
      expect(error.rawMessage).toBe(`file "${PGSTAT}" of endpoint ${T}/${TL}/${E} does not exist`);
    });

    it("ends with exactly one of two racing writers' files, whole", async () => {
      await putFile(compute, ep, STATEMENTS, content(300_000, 8));
      const a = content(1_000_000, 9);
      const b = content(1_200_000, 10);
      const [va, vb] = await Promise.all([
        putFile(compute, ep, STATEMENTS, a, { chunkBytes: 50_000 }),
        putFile(compute, ep, STATEMENTS, b, { chunkBytes: 50_000 }),
      ]);
      const got = await getFile(compute, ep, STATEMENTS);
      if (got.info.version === va.version) expect(got.data.equals(a)).toBe(true);
      else {
        expect(got.info.version).toBe(vb.version);
        expect(got.data.equals(b)).toBe(true);
      }
      expect((await compute.listFiles({ endpoint: ep })).files.map((file) => file.path)).toEqual([STATEMENTS]);
    });

    it("keeps the previous version when the client cancels an upload", async () => {
      await putFile(compute, ep, STATEMENTS, content(10_000, 11));
      const controller = new AbortController();
      const requests = (async function* () {
        yield { msg: { case: "header" as const, value: { endpoint: ep, path: STATEMENTS } } };
        yield { msg: { case: "chunk" as const, value: content(100_000, 12) } };
        controller.abort();
        await new Promise(() => undefined);
      })();
      const error = await connectErrorOf(compute.putFile(requests, { signal: controller.signal }));
      expect(error.code).toBe(Code.Canceled);
      // The server may notice the cancellation a moment after the client; reads still see the old file.
      expect((await getFile(compute, ep, STATEMENTS)).data.equals(content(10_000, 11))).toBe(true);
      expect((await compute.listFiles({ endpoint: ep })).files.map((file) => file.size)).toEqual([10_000n]);
    });
    it("gives up on a stalled upload at the call's deadline and keeps the previous version", async () => {
      await putFile(compute, ep, STATEMENTS, content(10_000, 13));
      const requests = (async function* () {
        yield { msg: { case: "header" as const, value: { endpoint: ep, path: STATEMENTS } } };
        yield { msg: { case: "chunk" as const, value: content(50_000, 14) } };
        await new Promise(() => undefined);
      })();
      const error = await connectErrorOf(compute.putFile(requests, { timeoutMs: 300 }));
      expect(error.code).toBe(Code.DeadlineExceeded);
      expect((await getFile(compute, ep, STATEMENTS)).data.equals(content(10_000, 13))).toBe(true);
    });
  });

  describe("Epufs list", () => {
    it("lists an endpoint's files in path order, page by page", async () => {
      for (const path of [STATEMENTS, PREWARM, PGSTAT, "pg_stat/db_5.stat", "lfc_state"]) {
        await putFile(compute, ep, path, content(10, path.length));
      }
      await putFile(epufs.client(await keys.computeToken(T, TL, "ep-other")), endpointRef(T, TL, "ep-other"), PGSTAT, content(10, 1));
      const paths: string[] = [];
      let pageToken = "";
      let pages = 0;
      do {
        const page = await compute.listFiles({ endpoint: ep, pageSize: 2, pageToken });
        expect(page.files.length).toBeLessThanOrEqual(2);
        paths.push(...page.files.map((file) => file.path));
        pageToken = page.nextPageToken;
        pages += 1;
      } while (pageToken !== "");
      expect(pages).toBe(3);
      expect(paths).toEqual([PREWARM, "lfc_state", "pg_stat/db_5.stat", STATEMENTS, PGSTAT]);
    });

    it("lists nothing for an endpoint without files", async () => {
      expect(await compute.listFiles({ endpoint: ep })).toMatchObject({ files: [], nextPageToken: "" });
    });

    it("refuses a page token from another endpoint's listing", async () => {
      for (const path of [STATEMENTS, PGSTAT]) await putFile(controlPlane, endpointRef(T, TL, "ep-a"), path, content(5, 1));
      const { nextPageToken } = await controlPlane.listFiles({ endpoint: endpointRef(T, TL, "ep-a"), pageSize: 1 });
      const error = await connectErrorOf(compute.listFiles({ endpoint: ep, pageToken: nextPageToken }));
      expect(error.code).toBe(Code.InvalidArgument);
      expect(error.rawMessage).toContain("is not valid for this listing");
    });
  });

  describe("Epufs endpoint archive", () => {
    it("streams all of an endpoint's files as one tar, relative to PGDATA", async () => {
      const files = new Map([
        [STATEMENTS, content(150_000, 20)],
        [PREWARM, content(2 * 1024 * 1024 + 3, 21)],
        [PGSTAT, content(0, 22)],
      ]);
      for (const [path, data] of files) await putFile(compute, ep, path, data, { chunkBytes: 512 * 1024 });
      await putFile(controlPlane, endpointRef(T, TL, "ep-not-mine"), PGSTAT, content(10, 23));
      const archive = await getArchive(compute, ep);
      expect([...archive.files.keys()]).toEqual([PREWARM, STATEMENTS, PGSTAT]);
      for (const [path, data] of files) expect(archive.files.get(path)!.equals(data)).toBe(true);
      expect([...archive.modes.values()]).toEqual([0o600, 0o600, 0o600]);
    });

    it("streams an empty archive for an endpoint with no files", async () => {
      const archive = await getArchive(compute, ep);
      expect(archive.files.size).toBe(0);
      expect(archive.bytes).toBe(1024); // the two zero blocks that end a tar
    });
  });

  describe("Epufs deletes", () => {
    const other = endpointRef(T, TL, "ep-two");
    const otherTimeline = endpointRef(T, "timeline2", E);
    const otherTenant = endpointRef("tenant2", TL, E);

    beforeEach(async () => {
      await putFile(controlPlane, ep, STATEMENTS, content(100, 1));
      await putFile(controlPlane, ep, PGSTAT, content(200, 2));
      await putFile(controlPlane, other, PGSTAT, content(300, 3));
      await putFile(controlPlane, otherTimeline, PGSTAT, content(400, 4));
      await putFile(controlPlane, otherTenant, PGSTAT, content(500, 5));
    });

    const remaining = async (): Promise<number> => {
      let total = 0;
      for (const endpoint of [ep, other, otherTimeline, otherTenant]) {
        total += (await controlPlane.listFiles({ endpoint })).files.length;
      }
      return total;
    };

    it("deletes one file with the endpoint's compute token and counts it", async () => {
      expect((await compute.deleteFile({ endpoint: ep, path: PGSTAT })).deleted).toMatchObject({ objects: 1n, bytes: 200n });
      expect((await connectErrorOf(getFile(compute, ep, PGSTAT))).code).toBe(Code.NotFound);
      const again = await connectErrorOf(compute.deleteFile({ endpoint: ep, path: PGSTAT }));
      expect(again.code).toBe(Code.NotFound);
      expect(await remaining()).toBe(4);
    });

    it("deletes an endpoint's files and counts them", async () => {
      expect((await controlPlane.deleteEndpoint({ endpoint: ep })).deleted).toMatchObject({ objects: 2n, bytes: 300n });
      expect(await remaining()).toBe(3);
      expect((await controlPlane.deleteEndpoint({ endpoint: ep })).deleted).toMatchObject({ objects: 0n, bytes: 0n });
    });

    it("deletes a timeline's files across its endpoints and counts them", async () => {
      const response = await controlPlane.deleteTimeline({ tenantId: T, timelineId: TL });
      expect(response.deleted).toMatchObject({ objects: 3n, bytes: 600n });
      expect(await remaining()).toBe(2);
    });

    it("deletes a tenant's files across its timelines and counts them", async () => {
      expect((await controlPlane.deleteTenant({ tenantId: T })).deleted).toMatchObject({ objects: 4n, bytes: 1000n });
      expect(await remaining()).toBe(1);
      expect((await controlPlane.listFiles({ endpoint: otherTenant })).files).toHaveLength(1);
    });

    it("accepts an admin token for deletes", async () => {
      const admin = epufs.client(await keys.mint({ scope: "admin" }));
      expect((await admin.deleteTenant({ tenantId: "tenant2" })).deleted).toMatchObject({ objects: 1n, bytes: 500n });
    });
  });

  describe("Epufs limits", () => {
    it("refuses a declared size over the file limit, naming file, size, limit and flag", async () => {
      const error = await connectErrorOf(putFile(compute, ep, PREWARM, content(10, 1), { size: 5 * 1024 * 1024 }));
      expect(error.code).toBe(Code.ResourceExhausted);
      expect(error.rawMessage).toBe(
        `file "${PREWARM}" is 5 MiB; the limit is 4 MiB (--max-file-bytes); nothing was stored`,
      );
      expect(await epufs.store.list("")).toMatchObject({ items: [] });
    });

    it("refuses a streamed file that grows over the file limit and keeps the previous version", async () => {
      await putFile(compute, ep, PREWARM, content(1000, 2));
      const error = await connectErrorOf(putFile(compute, ep, PREWARM, content(4 * 1024 * 1024 + 1, 3), { chunkBytes: 1024 * 1024 }));
      expect(error.code).toBe(Code.ResourceExhausted);
      expect(error.rawMessage).toBe(
        `file "${PREWARM}" is larger than 4 MiB; the limit is 4 MiB (--max-file-bytes); nothing was stored`,
      );
      expect((await getFile(compute, ep, PREWARM)).data.equals(content(1000, 2))).toBe(true);
      expect((await epufs.store.list("")).items).toHaveLength(1);
    });

    it("enforces the endpoint quota, counting a replaced file once", async () => {
      const MiB = 1024 * 1024;
      await putFile(compute, ep, PREWARM, content(3 * MiB, 4), { chunkBytes: MiB });
      await putFile(compute, ep, STATEMENTS, content(2 * MiB, 5), { chunkBytes: MiB });
      // Replacing the 3 MiB file with 4 MiB fits: 4 + 2 <= 6 MiB.
      await putFile(compute, ep, PREWARM, content(4 * MiB, 6), { chunkBytes: MiB });
      const streamed = await connectErrorOf(putFile(compute, ep, PGSTAT, content(MiB, 7), { chunkBytes: MiB / 4 }));
      expect(streamed.code).toBe(Code.ResourceExhausted);
      expect(streamed.rawMessage).toBe(
        `file "${PGSTAT}" does not fit in endpoint ${T}/${TL}/${E}'s quota of 6 MiB: its other files take 6 MiB (--endpoint-quota-bytes); nothing was stored`,
      );
      const declared = await connectErrorOf(putFile(compute, ep, STATEMENTS, content(10, 8), { size: 2 * MiB + 1 }));
      expect(declared.code).toBe(Code.ResourceExhausted);
      expect(declared.rawMessage).toContain("(2 MiB) does not fit in endpoint");
      const listed = await compute.listFiles({ endpoint: ep });
      expect(listed.files.map((file) => [file.path, file.size])).toEqual([
        [PREWARM, BigInt(4 * MiB)],
        [STATEMENTS, BigInt(2 * MiB)],
      ]);
      // Other endpoints have their own quota.
      await putFile(controlPlane, endpointRef(T, TL, "ep-two"), PGSTAT, content(MiB, 9), { chunkBytes: MiB });
    });

    it("lets only one of two concurrent puts through when both together exceed the quota", async () => {
      const MiB = 1024 * 1024;
      const results = await Promise.allSettled([
        putFile(compute, ep, PREWARM, content(4 * MiB, 10), { chunkBytes: MiB / 2 }),
        putFile(compute, ep, STATEMENTS, content(3 * MiB, 11), { chunkBytes: MiB / 2 }),
      ]);
      expect(results.map((result) => result.status).sort()).toEqual(["fulfilled", "rejected"]);
      const refused = results.find((result) => result.status === "rejected") as PromiseRejectedResult;
      expect((await connectErrorOf(Promise.reject(refused.reason))).code).toBe(Code.ResourceExhausted);
      const listed = await compute.listFiles({ endpoint: ep });
      expect(listed.files).toHaveLength(1);
      expect([4 * MiB, 3 * MiB]).toContain(Number(listed.files[0]!.size));
    });
  });
});
