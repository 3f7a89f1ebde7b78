import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectErrorOf, content, endpointRef, getArchive, getFile, putFile, type EpufsClient } from "./helpers/epufs-calls.js";
import { startEpufsTestServer, type EpufsTestServer } from "./helpers/epufs-server.js";
import { createTestKeys, type TestKeys } from "./helpers/test-keys.js";

const T = "tenant1";
const TL = "timeline1";
const E = "ep-one";
const ep = endpointRef(T, TL, E);
const PATH = "pg_stat/pg_stat_statements.stat";

let keys: TestKeys;
let strangerKeys: TestKeys;
let epufs: EpufsTestServer;

beforeAll(async () => {
  keys = await createTestKeys();
  strangerKeys = await createTestKeys();
  epufs = await startEpufsTestServer({ keys });
  await putFile(epufs.client(await keys.computeToken(T, TL, E)), ep, PATH, content(100, 1));
});
afterAll(async () => {
  await epufs?.close();
  await keys?.remove();
  await strangerKeys?.remove();
});

/** Every RPC on endpoint `ep`, so each auth rule is checked on all of them. */
const calls: Array<[string, (client: EpufsClient) => Promise<unknown>]> = [
  ["PutFile", (client) => putFile(client, ep, PATH, content(10, 2))],
  ["GetFile", (client) => getFile(client, ep, PATH)],
  ["ListFiles", (client) => client.listFiles({ endpoint: ep })],
  ["GetEndpointArchive", (client) => getArchive(client, ep)],
  ["DeleteFile", (client) => client.deleteFile({ endpoint: ep, path: PATH })],
  ["DeleteEndpoint", (client) => client.deleteEndpoint({ endpoint: ep })],
  ["DeleteTimeline", (client) => client.deleteTimeline({ tenantId: T, timelineId: TL })],
  ["DeleteTenant", (client) => client.deleteTenant({ tenantId: T })],
];

async function expectUnchanged(): Promise<void> {
  const admin = epufs.client(await keys.mint({ scope: "admin" }));
  const got = await getFile(admin, ep, PATH);
  expect(got.data.equals(content(100, 1))).toBe(true);
}

describe("Epufs authentication", () => {
  it.each(calls)("%s without a token is UNAUTHENTICATED", async (_name, call) => {
    const error = await connectErrorOf(call(epufs.client()));
    expect(error.code).toBe(Code.Unauthenticated);
    await expectUnchanged();
  });

  it.each(calls)("%s with an expired token is UNAUTHENTICATED", async (_name, call) => {
    const expired = await keys.mint(
      { scope: "compute", tenantId: T, timelineId: TL, endpointId: E },
      { ttlSec: 60, now: () => Date.now() - 3_600_000 },
    );
    const error = await connectErrorOf(call(epufs.client(expired)));
    expect(error.code).toBe(Code.Unauthenticated);
    expect(error.rawMessage).toContain("expired");
    await expectUnchanged();
  });

  it.each(calls)("%s with a token signed by an unknown key is UNAUTHENTICATED", async (_name, call) => {
    const forged = await strangerKeys.mint({ scope: "admin" });
    const error = await connectErrorOf(call(epufs.client(forged)));
    expect(error.code).toBe(Code.Unauthenticated);
    await expectUnchanged();
  });

  it("rejects a token whose signature was tampered with", async () => {
    const token = await keys.computeToken(T, TL, E);
    const [header, payload, signature] = token.split(".");
    const flipped = (signature![0] === "A" ? "B" : "A") + signature!.slice(1);
    const error = await connectErrorOf(getFile(epufs.client(`${header}.${payload}.${flipped}`), ep, PATH));
    expect(error.code).toBe(Code.Unauthenticated);
  });
});

describe("Epufs authorization", () => {
  const fileCalls = calls.slice(0, 5);

  it.each(fileCalls)("%s with another tenant's compute token is PERMISSION_DENIED", async (_name, call) => {
    const error = await connectErrorOf(call(epufs.client(await keys.computeToken("tenant2", TL, E))));
    expect(error.code).toBe(Code.PermissionDenied);
    expect(error.rawMessage).toBe(`the compute token is for tenant_id "tenant2", not tenant_id "${T}"`);
    await expectUnchanged();
  });

  it.each(fileCalls)("%s with another timeline's compute token is PERMISSION_DENIED", async (_name, call) => {
    const error = await connectErrorOf(call(epufs.client(await keys.computeToken(T, "timeline2", E))));
    expect(error.code).toBe(Code.PermissionDenied);
    expect(error.rawMessage).toBe(`the compute token is for timeline_id "timeline2", not timeline_id "${TL}"`);
    await expectUnchanged();
  });

  it.each(fileCalls)("%s with another endpoint's compute token is PERMISSION_DENIED", async (_name, call) => {
    const error = await connectErrorOf(call(epufs.client(await keys.computeToken(T, TL, "ep-two"))));
    expect(error.code).toBe(Code.PermissionDenied);
    expect(error.rawMessage).toBe(`the compute token is for endpoint_id "ep-two", not endpoint_id "${E}"`);
    await expectUnchanged();
  });

  it.each(calls.slice(5))("%s with the endpoint's own compute token is PERMISSION_DENIED", async (_name, call) => {
    const error = await connectErrorOf(call(epufs.client(await keys.computeToken(T, TL, E))));
    expect(error.code).toBe(Code.PermissionDenied);
    expect(error.rawMessage).toBe("a compute token may not do this; it needs scope control_plane");
    await expectUnchanged();
  });

  it("lets a compute token read, list and archive its own endpoint", async () => {
    const compute = epufs.client(await keys.computeToken(T, TL, E));
    expect((await getFile(compute, ep, PATH)).data.equals(content(100, 1))).toBe(true);
    expect((await compute.listFiles({ endpoint: ep })).files.map((file) => file.path)).toEqual([PATH]);
    expect((await getArchive(compute, ep)).files.get(PATH)!.equals(content(100, 1))).toBe(true);
  });
});
