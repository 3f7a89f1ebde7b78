import { execFileSync } from "node:child_process";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ReviewDecision, Visibility } from "../gen/pgmesh/extensionstore/v1/extension_store_pb.js";
import { createNeonExtensionRoute, extensionStoreRegistration } from "../src/extstore/index.js";
import { startServer, type ServerHandle } from "../src/server/index.js";
import { publicHeader, publishRequests, startExtStoreHarness, type ExtStoreHarness } from "./fixtures/extstore/extstore-harness.js";
import { rawTar, validBundleEntries } from "./fixtures/extstore/raw-tar.js";

const arch = process.arch === "x64" ? "amd64" : process.arch;

describe("ExtensionStore as a Neon extension gateway (-r)", () => {
  let h: ExtStoreHarness;
  let gateway: ServerHandle;
  let counter = 0;

  beforeAll(async () => {
    h = await startExtStoreHarness("local");
    gateway = await startServer({
      port: 0,
      services: [extensionStoreRegistration(h.store)],
      auth: { verifier: h.keys.verifier },
      logger: pino({ level: "silent" }),
      fallback: createNeonExtensionRoute(h.store),
    });
  });
  afterAll(async () => {
    await gateway?.close();
    await h?.stop();
  });

  async function publish(name: string, options: { approve: boolean; visibility?: Visibility }): Promise<Buffer> {
    const bytes = rawTar(validBundleEntries(name, `#${counter++}`));
    const header = publicHeader(name, options.visibility ? { visibility: options.visibility } : {});
    const { extension } = await h.admin.publishExtension(publishRequests(header, bytes));
    if (options.approve) await h.admin.reviewExtension({ name, sha256: extension!.sha256, decision: ReviewDecision.APPROVE });
    return bytes;
  }
  const get = (path: string) => fetch(`${gateway.url}${path}`);

  it("serves the newest approved public bundle at BUILD_TAG/ARCH/vNN/extensions/NAME.tar.zst as a zstd tar", async () => {
    await publish("gis", { approve: true });
    const newest = await publish("gis", { approve: true });
    const res = await get(`/5834329303/${arch}/v15/extensions/gis.tar.zst`);
    expect(res.status).toBe(200);
    const compressed = Buffer.from(await res.arrayBuffer());
    expect(compressed.subarray(0, 4)).toEqual(Buffer.from([0x28, 0xb5, 0x2f, 0xfd])); // zstd frame magic
    expect(execFileSync("zstd", ["-d", "-c", "-q"], { input: compressed })).toEqual(newest);
  });

  it("answers 404 for a private bundle, an unapproved one, another Postgres major and another architecture", async () => {
    await publish("secret", { approve: true, visibility: Visibility.PRIVATE });
    await publish("pending", { approve: false });
    expect((await get(`/tag/${arch}/v15/extensions/secret.tar.zst`)).status).toBe(404);
    expect((await get(`/tag/${arch}/v15/extensions/pending.tar.zst`)).status).toBe(404);
    expect((await get(`/tag/${arch}/v16/extensions/gis.tar.zst`)).status).toBe(404);
    expect((await get(`/tag/${arch === "amd64" ? "arm64" : "amd64"}/v15/extensions/gis.tar.zst`)).status).toBe(404);
  });

  it("answers 400 for a name that is not an extension name", async () => {
    expect((await get(`/tag/${arch}/v15/extensions/a--b.tar.zst`)).status).toBe(400);
  });
});
