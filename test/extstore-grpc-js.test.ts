import { resolve } from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { rawTar, validBundleEntries } from "./fixtures/extstore/raw-tar.js";
import { sha256Of, startExtStoreHarness, type ExtStoreHarness } from "./fixtures/extstore/extstore-harness.js";

/** The ExtensionStore client @grpc/grpc-js builds from proto/ at run time: nothing pgmesh generated. */
type GrpcClient = grpc.Client & {
  PublishExtension(
    metadata: grpc.Metadata,
    callback: (error: grpc.ServiceError | null, response?: { extension: { sha256: string; reviewState: string } }) => void,
  ): grpc.ClientWritableStream<unknown>;
  ReviewExtension(request: unknown, metadata: grpc.Metadata, callback: (error: grpc.ServiceError | null) => void): void;
  IssueDownloadToken(
    request: unknown,
    metadata: grpc.Metadata,
    callback: (error: grpc.ServiceError | null, response?: { token: string }) => void,
  ): void;
  DownloadBundle(request: unknown): grpc.ClientReadableStream<{ info?: { extension: { sha256: string } }; chunk?: Buffer }>;
};

describe("ExtensionStore with the @grpc/grpc-js client", () => {
  let h: ExtStoreHarness;
  let client: GrpcClient;

  beforeAll(async () => {
    h = await startExtStoreHarness("local");
    const definition = protoLoader.loadSync("pgmesh/extensionstore/v1/extension_store.proto", {
      includeDirs: [resolve(import.meta.dirname, "../proto")],
      longs: String,
      enums: String,
      defaults: true,
      oneofs: true,
    });
    const loaded = grpc.loadPackageDefinition(definition) as unknown as {
      pgmesh: {
        extensionstore: { v1: { ExtensionStoreService: new (address: string, credentials: grpc.ChannelCredentials) => GrpcClient } };
      };
    };
    client = new loaded.pgmesh.extensionstore.v1.ExtensionStoreService(new URL(h.server.url).host, grpc.credentials.createInsecure());
  });
  afterAll(async () => {
    client?.close();
    await h?.stop();
  });

  async function bearer(scope: "admin" | "control_plane"): Promise<grpc.Metadata> {
    const metadata = new grpc.Metadata();
    metadata.set("authorization", `Bearer ${await h.keys.mint({ scope })}`);
    return metadata;
  }

  it("publishes as a client stream, reviews, issues a token and downloads as a server stream", async () => {
    const bytes = rawTar([...validBundleEntries("grpcjs"), { name: "lib/bitcode/grpcjs/blob.bc", content: Buffer.alloc(2_500_000, 7) }]);
    const admin = await bearer("admin");
    const published = await new Promise<{ extension: { sha256: string; reviewState: string } }>((done, fail) => {
      const call = client.PublishExtension(admin, (error, response) => (error ? fail(error) : done(response!)));
      call.write({ header: { name: "grpcjs", pgMajors: [15], visibility: "VISIBILITY_PUBLIC" } });
      for (let offset = 0; offset < bytes.length; offset += 300_000) call.write({ chunk: bytes.subarray(offset, offset + 300_000) });
      call.end();
    });
    expect(published.extension).toMatchObject({ sha256: sha256Of(bytes), reviewState: "REVIEW_STATE_PENDING" });
    const sha256 = published.extension.sha256;
    await new Promise<void>((done, fail) =>
      client.ReviewExtension({ name: "grpcjs", sha256, decision: "REVIEW_DECISION_APPROVE" }, admin, (e) => (e ? fail(e) : done())),
    );
    const { token } = await new Promise<{ token: string }>((done, fail) =>
      client.IssueDownloadToken({ tenantId: "t1", endpointId: "e1", sha256: [sha256] }, admin, (e, r) => (e ? fail(e) : done(r!))),
    );
    const messages: { info?: { extension: { sha256: string } }; chunk?: Buffer }[] = [];
    await new Promise<void>((done, fail) => {
      const call = client.DownloadBundle({ sha256, downloadToken: token });
      call.on("data", (m) => messages.push(m));
      call.on("error", fail);
      call.on("end", () => done());
    });
    expect(messages[0]!.info!.extension.sha256).toBe(sha256);
    expect(sha256Of(Buffer.concat(messages.slice(1).map((m) => m.chunk!)))).toBe(sha256);
  });

  it("answers a publish without a token with UNAUTHENTICATED", async () => {
    const error = await new Promise<grpc.ServiceError>((done) => {
      const call = client.PublishExtension(new grpc.Metadata(), (e) => done(e!));
      call.write({ header: { name: "nope", pgMajors: [15], visibility: "VISIBILITY_PUBLIC" } });
      call.end();
    });
    expect(error.code).toBe(grpc.status.UNAUTHENTICATED);
  });
});
