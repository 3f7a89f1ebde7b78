import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ReviewDecision } from "../gen/pgmesh/extensionstore/v1/extension_store_pb.js";
import { startExtStoreHarness, type ExtStoreHarness } from "./fixtures/extstore/extstore-harness.js";
import { callFailure } from "./helpers/call-failure.js";
import { endpointRef, getFile } from "./helpers/epufs-calls.js";
import { startEpufsTestServer, type EpufsTestServer } from "./helpers/epufs-server.js";

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
