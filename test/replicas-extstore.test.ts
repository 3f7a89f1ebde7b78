import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { decodeProtectedHeader } from "jose";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { beforeAll, describe, expect, it } from "vitest";
import { ExtensionStoreService, ReviewDecision, ReviewState } from "../gen/pgmesh/extensionstore/v1/extension_store_pb.js";
import { generateKeyFiles, type KeyFiles } from "../src/auth/index.js";
import { createExtensionStoreDownloader } from "../src/computectl/extensions/bundle-downloader.js";
import { createClientTransport } from "../src/server/index.js";
import { collectDownload, publicHeader, publishRequests, sha256Of } from "./fixtures/extstore/extstore-harness.js";
import { rawTar, validBundleEntries } from "./fixtures/extstore/raw-tar.js";
import { replicaEnvironment, type SharedStore } from "./helpers/replica-environment.js";
import { spawnServiceProcess, type ServiceProcess } from "./helpers/service-process.js";

type StoreClient = Client<typeof ExtensionStoreService>;

const environment = replicaEnvironment();
let signingKey: KeyFiles;
beforeAll(async () => {
  signingKey = await generateKeyFiles(join(environment.work(), "download-key"));
});

/** Two extension-store processes on one fresh store location, sharing one download signing key. */
async function twoReplicas(store: SharedStore, run: string): Promise<ServiceProcess[]> {
  const { url, env } = store.location(run);
  const args = ["--storage", url, "--auth-keys", environment.keys().jwksPath, "--signing-key", signingKey.privateKeyPath];
  return Promise.all([spawnServiceProcess("extension-store", args, env), spawnServiceProcess("extension-store", args, env)]);
}

async function adminClients(replicas: readonly ServiceProcess[]): Promise<StoreClient[]> {
  const token = await environment.keys().mint({ scope: "admin" });
  return replicas.map((replica) => createClient(ExtensionStoreService, createClientTransport({ baseUrl: replica.url, token })));
}

function bundleOf(name: string): Uint8Array {
  return rawTar(validBundleEntries(name));
}

describe.each(environment.stores)("two ExtensionStore replicas on $name", (store) => {
  let a: StoreClient;
  let b: StoreClient;
  beforeAll(async () => {
    [a, b] = (await adminClients(await twoReplicas(store, "catalog"))) as [StoreClient, StoreClient];
  });

  it("end an approve racing a reject in one decision that both replicas report", async () => {
    const names = ["race-a", "race-b", "race-c", "race-d"];
    const published = await Promise.all(names.map((name) => a.publishExtension(publishRequests(publicHeader(name), bundleOf(name)))));
    for (const { extension } of published) {
      const { name, sha256 } = extension!;
      const outcomes = await Promise.allSettled([
        a.reviewExtension({ name, sha256, decision: ReviewDecision.APPROVE }),
        b.reviewExtension({ name, sha256, decision: ReviewDecision.REJECT }),
      ]);
      const won = outcomes.flatMap((outcome) => (outcome.status === "fulfilled" ? [outcome.value.extension!.reviewState] : []));
      expect(won).toHaveLength(1);
      const lost = outcomes.find((outcome) => outcome.status === "rejected")!;
      expect(ConnectError.from((lost as PromiseRejectedResult).reason).code).toBe(Code.FailedPrecondition);
      for (const client of [a, b]) {
        expect((await client.getExtension({ name })).versions.map((version) => version.reviewState)).toEqual(won);
      }
    }
  });

  it("publish the same bytes at once as one version, reported as new by exactly one", async () => {
    const bytes = bundleOf("twice");
    const results = await Promise.all([a, b].map((client) => client.publishExtension(publishRequests(publicHeader("twice"), bytes))));
    expect(results.map((result) => result.alreadyExisted).sort()).toEqual([false, true]);
    expect(results[0]!.extension!.publishTime).toEqual(results[1]!.extension!.publishTime);
    const versions = (await b.getExtension({ name: "twice" })).versions;
    expect(versions).toHaveLength(1);
    expect(versions[0]!.publishTime).toEqual(results[0]!.extension!.publishTime);
    expect(versions[0]!.reviewState).toBe(ReviewState.PENDING);
  });
});

describe.each(environment.stores)("download tokens across two ExtensionStore replicas on $name", (store) => {
  /** Writes a key set file of these PEM files (private keys sign, the last one newest; public keys only verify). */
  async function keySetFile(name: string, pems: readonly string[]): Promise<string> {
    const path = join(environment.work(), `${store.name}-${name}.pem`.replace(/[^A-Za-z0-9.-]+/g, "-"));
    await writeFile(path, (await Promise.all(pems.map((pem) => readFile(pem, "utf8")))).join(""));
    return path;
  }

  it("verify a token of the old key at a replica that gained the new one, and keep old tokens valid through a rotation until the old key is removed", async () => {
    const [key1, key2] = await Promise.all(["key-1", "key-2"].map((dir) => generateKeyFiles(join(environment.work(), `${dir}-${store.name}`.replace(/[^A-Za-z0-9.-]+/g, "-")))));
    const { url, env } = store.location("rotation");
    const start = async (keySet: string) =>
      spawnServiceProcess("extension-store", ["--storage", url, "--auth-keys", environment.keys().jwksPath, "--signing-key", keySet], env);
    let a = await start(await keySetFile("a-key-1", [key1!.privateKeyPath]));
    const b = await start(await keySetFile("b-gained-key-2", [key1!.privateKeyPath, key2!.publicKeyPath]));
    let [atA, atB] = await adminClients([a, b]);
    const { extension } = await atA!.publishExtension(publishRequests(publicHeader("rotated"), bundleOf("rotated")));
    const { sha256 } = extension!;
    await atB!.reviewExtension({ name: "rotated", sha256, decision: ReviewDecision.APPROVE });
    const request = { tenantId: "t1", endpointId: "ep1", sha256: [sha256] };
    const download = (client: StoreClient, downloadToken: string) =>
      collectDownload(client.downloadBundle({ sha256, downloadToken })).then((got) => sha256Of(got.bytes));

    const signedWithKey1 = (await atA!.issueDownloadToken(request)).token;
    expect(decodeProtectedHeader(signedWithKey1).kid).toBe(key1!.kid);
    expect(await download(atB!, signedWithKey1)).toBe(sha256);

    // Rotation: A signs with key 2, keeping key 1 to verify tokens in flight.
    await a.kill();
    a = await start(await keySetFile("a-rotated", [key1!.publicKeyPath, key2!.privateKeyPath]));
    [atA] = await adminClients([a]);
    const signedWithKey2 = (await atA!.issueDownloadToken(request)).token;
    expect(decodeProtectedHeader(signedWithKey2).kid).toBe(key2!.kid);
    expect(await download(atB!, signedWithKey2)).toBe(sha256);
    expect(await download(atA!, signedWithKey1)).toBe(sha256);

    // Key 1 removed: its tokens are refused, key 2's still work.
    await a.kill();
    a = await start(await keySetFile("a-key-2", [key2!.privateKeyPath]));
    [atA] = await adminClients([a]);
    const refused = await download(atA!, signedWithKey1).catch((error: unknown) => ConnectError.from(error));
    expect(refused).toBeInstanceOf(ConnectError);
    expect((refused as ConnectError).code).toBe(Code.Unauthenticated);
    expect((refused as ConnectError).message).toContain(`signed with key "${key1!.kid}", which this extension store does not know`);
    expect(await download(atA!, signedWithKey2)).toBe(sha256);
  });
});

describe("compute-ctl's bundle downloader with two ExtensionStore replicas", () => {
  it("downloads through the live replica after the one it used is killed", async () => {
    const [a, b] = await twoReplicas(environment.stores[0]!, "failover");
    const [admin] = await adminClients([a!]);
    const { extension } = await admin!.publishExtension(publishRequests(publicHeader("failover"), bundleOf("failover")));
    const { sha256 } = extension!;
    await admin!.reviewExtension({ name: "failover", sha256, decision: ReviewDecision.APPROVE });
    const { token } = await admin!.issueDownloadToken({ tenantId: "t1", endpointId: "ep1", sha256: [sha256] });
    const download = createExtensionStoreDownloader({ addr: `${a!.addr},${b!.addr}`, downloadToken: token, timeoutMs: 30_000 });
    const fetch = async () => {
      const chunks: Uint8Array[] = [];
      for await (const chunk of download(sha256, new AbortController().signal)) chunks.push(chunk);
      return sha256Of(Buffer.concat(chunks));
    };
    expect(await fetch()).toBe(sha256);
    await a!.kill();
    expect(await fetch()).toBe(sha256);
  });
});
