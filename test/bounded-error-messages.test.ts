import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { Code, createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ReviewDecision } from "../gen/pgmesh/extensionstore/v1/extension_store_pb.js";
import { TimelineService } from "../gen/pgmesh/timeline/v1/timeline_pb.js";
import { openBlobStore, type BlobStore } from "../src/blob/index.js";
import { createClientTransport, serviceOf, type ServerHandle } from "../src/server/index.js";
import { compileTimelineCtlOptions, createTimelineHandlers, TimelineCtl } from "../src/timelinectl/index.js";
import { startExtStoreHarness, type ExtStoreHarness } from "./fixtures/extstore/extstore-harness.js";
import { callFailure } from "./helpers/call-failure.js";
import { endpointRef, getFile } from "./helpers/epufs-calls.js";
import { startEpufsTestServer, type EpufsTestServer } from "./helpers/epufs-server.js";
import { startTestServer } from "./helpers/test-server.js";

/** 100 KB of input: echoed whole, it would not fit the response's headers. */
const huge = "a".repeat(100_000);

/** An error message quotes at most 80 characters of input, plus the words around it. */
const maxMessageChars = 400;

describe("Epufs errors on 100 KB input", () => {
  let epufs: EpufsTestServer;
  beforeAll(async () => {
    epufs = await startEpufsTestServer();
  });
  afterAll(() => epufs?.close());

  it.each([
    ["a path", () => getFile(epufs.client(), endpointRef("t1", "tl1", "e1"), `pg_stat/${huge}`)],
    ["a tenant id", () => epufs.client().deleteTenant({ tenantId: huge })],
    ["an endpoint id", () => epufs.client().listFiles({ endpoint: endpointRef("t1", "tl1", huge) })],
  ])("answer INVALID_ARGUMENT quoting a bounded part of %s", async (_what, call) => {
    const error = await callFailure(call);
    expect(Code[error.code], error.rawMessage.slice(0, 200)).toBe("InvalidArgument");
    expect(error.rawMessage.length).toBeLessThan(maxMessageChars);
    expect(error.rawMessage).toMatch(/… \(100\d{3} characters\)/);
  });
});

describe("ExtensionStore errors on 100 KB input", () => {
  let h: ExtStoreHarness;
  beforeAll(async () => {
    h = await startExtStoreHarness("local");
  });
  afterAll(() => h?.stop());

  it.each([
    ["an extension name", () => h.controlPlane.getExtension({ name: huge })],
    ["a sha256", () => h.admin.reviewExtension({ name: "alpha", sha256: huge, decision: ReviewDecision.APPROVE })],
    ["a tenant id", () => h.controlPlane.grantExtension({ name: "alpha", tenantId: huge })],
  ])("answer INVALID_ARGUMENT quoting a bounded part of %s", async (_what, call) => {
    const error = await callFailure(call);
    expect(Code[error.code], error.rawMessage.slice(0, 200)).toBe("InvalidArgument");
    expect(error.rawMessage.length).toBeLessThan(maxMessageChars);
    expect(error.rawMessage).toMatch(/… \(100\d{3} characters\)/);
  });
});

describe("TimelineService errors on 100 KB input", () => {
  let dir: string;
  let store: BlobStore;
  let server: ServerHandle;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "pgmesh-bounded-"));
    store = await openBlobStore(pathToFileURL(dir).href);
    const ctl = new TimelineCtl(store, compileTimelineCtlOptions());
    server = await startTestServer({ services: [serviceOf({ service: TimelineService, impl: createTimelineHandlers(ctl) })] });
  });
  afterAll(async () => {
    await server?.close();
    await store?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("answer INVALID_ARGUMENT quoting a bounded part of a tenant id", async () => {
    const client = createClient(TimelineService, createClientTransport({ baseUrl: server.url }));
    const error = await callFailure(client.listTimelines({ tenantId: huge }));
    expect(Code[error.code], error.rawMessage.slice(0, 200)).toBe("InvalidArgument");
    expect(error.rawMessage.length).toBeLessThan(maxMessageChars);
    expect(error.rawMessage).toMatch(/… \(100\d{3} characters\)/);
  });
});
