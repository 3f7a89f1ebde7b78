import { resolve } from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { content } from "./helpers/epufs-calls.js";
import { startEpufsTestServer, type EpufsTestServer } from "./helpers/epufs-server.js";
import { createTestKeys, type TestKeys } from "./helpers/test-keys.js";

/** The Epufs client that @grpc/grpc-js builds from proto/ at run time: nothing pgmesh generated. */
type GrpcClient = grpc.Client & {
  PutFile(metadata: grpc.Metadata, callback: (error: grpc.ServiceError | null, response?: PutFileResponse) => void): grpc.ClientWritableStream<unknown>;
  GetFile(request: unknown, metadata: grpc.Metadata): grpc.ClientReadableStream<GetFileMessage>;
};
interface FileInfo {
  path: string;
  size: string;
  version: string;
}
interface PutFileResponse {
  file: FileInfo;
}
interface GetFileMessage {
  info?: FileInfo;
  chunk?: Buffer;
  notModified: boolean;
}

let keys: TestKeys;
let epufs: EpufsTestServer;
let client: GrpcClient;

beforeAll(async () => {
  keys = await createTestKeys();
  epufs = await startEpufsTestServer({ keys });
  const definition = protoLoader.loadSync("pgmesh/epufs/v1/epufs.proto", {
    includeDirs: [resolve(import.meta.dirname, "../proto")],
    longs: String,
    defaults: true,
    oneofs: true,
  });
  const loaded = grpc.loadPackageDefinition(definition) as unknown as {
    pgmesh: { epufs: { v1: { EpufsService: new (address: string, credentials: grpc.ChannelCredentials) => GrpcClient } } };
  };
  client = new loaded.pgmesh.epufs.v1.EpufsService(new URL(epufs.url).host, grpc.credentials.createInsecure());
});
afterAll(async () => {
  client?.close();
  await epufs?.close();
  await keys?.remove();
});

describe("Epufs with the @grpc/grpc-js client", () => {
  it("round-trips a file: put as a client stream, get as a server stream", async () => {
    const metadata = new grpc.Metadata();
    metadata.set("authorization", `Bearer ${await keys.computeToken("tenant1", "timeline1", "ep-one")}`);
    const endpoint = { tenantId: "tenant1", timelineId: "timeline1", endpointId: "ep-one" };
    const data = content(1_500_000, 42);

    const stored = await new Promise<PutFileResponse>((resolvePut, reject) => {
      const call = client.PutFile(metadata, (error, response) => (error ? reject(error) : resolvePut(response!)));
      call.write({ header: { endpoint, path: "pg_stat/pg_stat_statements.stat", size: String(data.length) } });
      for (let offset = 0; offset < data.length; offset += 256 * 1024) {
        call.write({ chunk: data.subarray(offset, offset + 256 * 1024) });
      }
      call.end();
    });
    expect(stored.file).toMatchObject({ path: "pg_stat/pg_stat_statements.stat", size: String(data.length) });

    const messages: GetFileMessage[] = [];
    await new Promise<void>((resolveGet, reject) => {
      const call = client.GetFile({ endpoint, path: "pg_stat/pg_stat_statements.stat" }, metadata);
      call.on("data", (message: GetFileMessage) => messages.push(message));
      call.on("error", reject);
      call.on("end", () => resolveGet());
    });
    expect(messages[0]!.info).toMatchObject({ size: String(data.length), version: stored.file.version });
    const received = Buffer.concat(messages.slice(1).map((message) => message.chunk!));
    expect(received.equals(data)).toBe(true);
  });

  it("sees PERMISSION_DENIED as grpc status 7", async () => {
    const metadata = new grpc.Metadata();
    metadata.set("authorization", `Bearer ${await keys.computeToken("tenant2", "timeline1", "ep-one")}`);
    const error = await new Promise<grpc.ServiceError>((resolveError) => {
      const call = client.GetFile(
        { endpoint: { tenantId: "tenant1", timelineId: "timeline1", endpointId: "ep-one" }, path: "pg_stat/pgstat.stat" },
        metadata,
      );
      call.on("data", () => undefined);
      call.on("error", resolveError);
    });
    expect(error.code).toBe(grpc.status.PERMISSION_DENIED);
    // connect-node percent-encodes grpc-message with encodeURIComponent (",", "/" too); grpc-js
    // decodes with decodeURI, which leaves "%2C" as it is: decode the rest here.
    expect(decodeURIComponent(error.details)).toBe('the compute token is for tenant_id "tenant2", not tenant_id "tenant1"');
  });
});
