import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { compileEpufsOptions, EpufsOptionsError } from "../src/epufs/index.js";
import { quoteInput } from "../src/errors/index.js";
import { connectErrorOf, content, endpointRef, getFile, putFile, type EpufsClient } from "./helpers/epufs-calls.js";
import { startEpufsTestServer, type EpufsTestServer } from "./helpers/epufs-server.js";

const ep = endpointRef("tenant1", "timeline1", "ep-one");
let epufs: EpufsTestServer;
let client: EpufsClient;

beforeAll(async () => {
  epufs = await startEpufsTestServer({
    epufs: { allowedPaths: ["pg_stat/pgstat.stat", "pg_stat/*.stat", "autoprewarm.blocks", "deep/dir/file"] },
  });
  client = epufs.client();
});
afterAll(() => epufs?.close());

describe("Epufs paths", () => {
  it.each([
    ["../postgresql.conf", "escapes PGDATA"],
    ["pg_stat/../../etc/passwd", "escapes PGDATA"],
    ["..", "escapes PGDATA"],
    ["/etc/passwd", "is absolute; give it relative to PGDATA"],
    ["pg_stat/../autoprewarm.blocks", 'is not normalised (has a ".." segment); use "autoprewarm.blocks"'],
    ["./autoprewarm.blocks", 'is not normalised (empty or "." segments, or a trailing "/"); use "autoprewarm.blocks"'],
    ["pg_stat//pgstat.stat", 'is not normalised (empty or "." segments, or a trailing "/"); use "pg_stat/pgstat.stat"'],
    ["pg_stat/", 'is not normalised (empty or "." segments, or a trailing "/"); use "pg_stat"'],
    [".", "names PGDATA itself, not a file in it"],
    ["", "is empty"],
    ["pg_stat/pgstat.stat\0.x", "contains a NUL byte"],
    ["pg_stat\\pgstat.stat", 'contains a backslash; separate directories with "/"'],
    ["pg_stat/\n.stat", "contains a control character"],
    [`pg_stat/${"x".repeat(600)}.stat`, "is longer than 512 bytes"],
    [`pg_stat/${"x".repeat(300)}`, "has a segment longer than 255 bytes"],
  ])("refuses to store %j: INVALID_ARGUMENT", async (path, reason) => {
    const error = await connectErrorOf(putFile(client, ep, path, content(10, 1)));
    expect(error.code).toBe(Code.InvalidArgument);
    expect(error.rawMessage).toBe(`path ${quoteInput(path)} ${reason}`);
    expect((await epufs.store.list("")).items).toEqual([]);
  });

  it("refuses to read or delete a path that escapes PGDATA", async () => {
    expect((await connectErrorOf(getFile(client, ep, "../../x"))).code).toBe(Code.InvalidArgument);
    expect((await connectErrorOf(client.deleteFile({ endpoint: ep, path: "../x" }))).code).toBe(Code.InvalidArgument);
  });

  it("stores only paths on the allow-list: FAILED_PRECONDITION otherwise", async () => {
    const error = await connectErrorOf(putFile(client, ep, "postgresql.conf", content(10, 1)));
    expect(error.code).toBe(Code.FailedPrecondition);
    expect(error.rawMessage).toBe(
      'path "postgresql.conf" is not on the allow-list (pg_stat/pgstat.stat, pg_stat/*.stat, autoprewarm.blocks, deep/dir/file); only these files may be stored (--allowed-paths)',
    );
    expect((await connectErrorOf(putFile(client, ep, "pg_stat/sub/x.stat", content(1, 1)))).code).toBe(
      Code.FailedPrecondition,
    );
    expect((await epufs.store.list("")).items).toEqual([]);
  });

  it("matches '*' within one segment and stores nested paths", async () => {
    await putFile(client, ep, "pg_stat/pg_stat_statements.stat", content(10, 2));
    await putFile(client, ep, "deep/dir/file", content(10, 3));
    expect((await client.listFiles({ endpoint: ep })).files.map((file) => file.path)).toEqual([
      "deep/dir/file",
      "pg_stat/pg_stat_statements.stat",
    ]);
    await client.deleteEndpoint({ endpoint: ep });
  });

  it.each([
    [endpointRef("../x", "timeline1", "ep-one"), 'tenant_id "../x" is not valid: use 1 to 64 letters, digits, "_" or "-"'],
    [endpointRef("tenant1", "", "ep-one"), "timeline_id is missing"],
    [endpointRef("tenant1", "timeline1", "e".repeat(65)), "endpoint_id"],
    [endpointRef("tenant1", "time/line", "ep-one"), 'timeline_id "time/line" is not valid'],
  ])("refuses invalid ids %#: INVALID_ARGUMENT", async (endpoint, reason) => {
    const error = await connectErrorOf(putFile(client, endpoint, "autoprewarm.blocks", content(10, 1)));
    expect(error.code).toBe(Code.InvalidArgument);
    expect(error.rawMessage).toContain(reason);
  });

  it("refuses a put without an endpoint or a header first", async () => {
    const noEndpoint = await connectErrorOf(
      client.putFile(
        (async function* () {
          yield { msg: { case: "header" as const, value: { path: "autoprewarm.blocks" } } };
        })(),
      ),
    );
    expect([noEndpoint.code, noEndpoint.rawMessage]).toEqual([Code.InvalidArgument, "endpoint is missing"]);
    const chunkFirst = await connectErrorOf(
      client.putFile(
        (async function* () {
          yield { msg: { case: "chunk" as const, value: new Uint8Array(3) } };
        })(),
      ),
    );
    expect([chunkFirst.code, chunkFirst.rawMessage]).toEqual([
      Code.InvalidArgument,
      "PutFile stream must start with a header message, then chunks",
    ]);
  });
});

describe("Epufs options", () => {
  it("defaults to 100 MiB files, a 1 GiB endpoint quota and the well-known PGDATA files", () => {
    const options = compileEpufsOptions();
    expect(options.maxFileBytes).toBe(100 * 1024 * 1024);
    expect(options.endpointQuotaBytes).toBe(1024 * 1024 * 1024);
    for (const path of ["pg_stat/pg_stat_statements.stat", "pg_stat/pgstat.stat", "autoprewarm.blocks", "pg_stat/db_1.stat"]) {
      expect(options.allowedPaths.allows(path)).toBe(true);
    }
    expect(options.allowedPaths.allows("postgresql.conf")).toBe(false);
  });

  it.each([
    [{ maxFileBytes: 0 }, "--max-file-bytes must be a positive whole number of bytes, got 0"],
    [{ endpointQuotaBytes: 1.5 }, "--endpoint-quota-bytes must be a positive whole number of bytes, got 1.5"],
    [{ allowedPaths: ["../x"] }, '--allowed-paths entry "../x" escapes PGDATA'],
  ])("rejects %j naming the flag", (options, message) => {
    expect(() => compileEpufsOptions(options)).toThrow(EpufsOptionsError);
    expect(() => compileEpufsOptions(options)).toThrow(message);
  });
});
