import { mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  PublishExtensionRequestSchema,
  type PublishExtensionRequest,
} from "../gen/pgmesh/extensionstore/v1/extension_store_pb.js";
import { generateKeyFiles, loadSigningKey } from "../src/auth/index.js";
import { openBlobStore, type BlobStore } from "../src/blob/index.js";
import { ExtensionStore } from "../src/extstore/index.js";
import { publicHeader, publishRequests } from "./fixtures/extstore/extstore-harness.js";
import { rawTar, validBundleEntries } from "./fixtures/extstore/raw-tar.js";

/*
 * The publish stream as the transport hands it to the store: these cases are
 * driven on the store directly, so the failing stream is exact and the
 * clean-up can be checked the moment the call returns.
 */
describe("ExtensionStore publish stream", () => {
  let dir: string;
  let spoolDir: string;
  let blobs: BlobStore;
  let store: ExtensionStore;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "pgmesh-extstore-stream-"));
    spoolDir = join(dir, "spool");
    await mkdir(spoolDir);
    blobs = await openBlobStore(`file://${dir}/store`);
    const signingKey = await loadSigningKey((await generateKeyFiles(join(dir, "keys"))).privateKeyPath);
    store = new ExtensionStore({ blobs, signingKey, logger: pino({ level: "silent" }), spoolDir, maxBundleBytes: 64 * 1024 });
  });
  afterEach(async () => {
    await blobs.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function* messages(
    inits: AsyncIterable<MessageInitShape<typeof PublishExtensionRequestSchema>>,
  ): AsyncGenerator<PublishExtensionRequest> {
    for await (const init of inits) yield create(PublishExtensionRequestSchema, init);
  }

  async function storedKeys(): Promise<string[]> {
    const keys: string[] = [];
    for await (const info of blobs.listAll("")) keys.push(info.key);
    return keys;
  }

  async function codeOf(call: Promise<unknown>): Promise<string> {
    const error = await call.then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectError);
    return Code[(error as ConnectError).code];
  }

  it("leaves no spool file and no object when the stream breaks off mid-bundle", async () => {
    const bytes = rawTar(validBundleEntries("demo"));
    async function* brokenOff(): AsyncGenerator<MessageInitShape<typeof PublishExtensionRequestSchema>> {
      yield { msg: { case: "header", value: publicHeader("demo") } };
      yield { msg: { case: "chunk", value: bytes.subarray(0, 1024) } };
      throw new ConnectError("the client cancelled", Code.Canceled);
    }
    expect(await codeOf(store.publish(messages(brokenOff()), undefined))).toBe("Canceled");
    expect(await readdir(spoolDir)).toEqual([]);
    expect(await storedKeys()).toEqual([]);
  });

  it("refuses a bundle over --max-bundle-bytes with RESOURCE_EXHAUSTED and keeps nothing", async () => {
    const bytes = rawTar([...validBundleEntries("demo"), { name: "lib/bitcode/demo/big.bc", content: Buffer.alloc(60 * 1024) }]);
    expect(bytes.length).toBeGreaterThan(64 * 1024);
    expect(await codeOf(store.publish(messages(publishRequests(publicHeader("demo"), bytes)), undefined))).toBe("ResourceExhausted");
    expect(await readdir(spoolDir)).toEqual([]);
    expect(await storedKeys()).toEqual([]);
  });

  it("refuses a stream that does not start with the header", async () => {
    async function* chunkFirst(): AsyncGenerator<MessageInitShape<typeof PublishExtensionRequestSchema>> {
      yield { msg: { case: "chunk", value: new Uint8Array(10) } };
    }
    expect(await codeOf(store.publish(messages(chunkFirst()), undefined))).toBe("InvalidArgument");
    expect(await storedKeys()).toEqual([]);
  });

  it("refuses a second header", async () => {
    const bytes = rawTar(validBundleEntries("demo"));
    async function* twoHeaders(): AsyncGenerator<MessageInitShape<typeof PublishExtensionRequestSchema>> {
      yield* publishRequests(publicHeader("demo"), bytes.subarray(0, 512));
      yield { msg: { case: "header", value: publicHeader("demo") } };
    }
    expect(await codeOf(store.publish(messages(twoHeaders()), undefined))).toBe("InvalidArgument");
    expect(await readdir(spoolDir)).toEqual([]);
    expect(await storedKeys()).toEqual([]);
  });

  it("refuses an empty bundle", async () => {
    expect(await codeOf(store.publish(messages(publishRequests(publicHeader("demo"), new Uint8Array(0))), undefined))).toBe(
      "InvalidArgument",
    );
    expect(await storedKeys()).toEqual([]);
  });
});
