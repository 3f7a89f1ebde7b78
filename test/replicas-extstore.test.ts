import { join } from "node:path";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { beforeAll, describe, expect, it } from "vitest";
import { ExtensionStoreService, ReviewDecision, ReviewState } from "../gen/pgmesh/extensionstore/v1/extension_store_pb.js";
import { generateKeyFiles, type KeyFiles } from "../src/auth/index.js";
import { createClientTransport } from "../src/server/index.js";
import { publicHeader, publishRequests } from "./fixtures/extstore/extstore-harness.js";
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
