import { resolve } from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startWalRedoHarness, type WalRedoHarness } from "./walredo-harness.js";
import { maskPage } from "./walredo-page-mask.js";
import { buildPageCases, runWalWorkload, type PageCase, type WalWorkload } from "./walredo-workload.js";

/** The WalRedo client @grpc/grpc-js builds from proto/ at run time: nothing pgmesh generated. */
type GrpcClient = grpc.Client & {
  Redo(metadata?: grpc.Metadata): grpc.ClientDuplexStream<unknown, GrpcRedoResponse>;
  RedoPage(request: unknown, callback: (error: grpc.ServiceError | null, response?: { page: Buffer }) => void): void;
  Ping(request: unknown, callback: (error: grpc.ServiceError | null, response?: { round_trip_us: string }) => void): void;
};
interface GrpcRedoResponse {
  request_id: string;
  page?: Buffer;
  error?: { code: number; message: string };
  result: "page" | "error";
}

describe("WalRedo with the @grpc/grpc-js client", () => {
  let workload: WalWorkload;
  let cases: PageCase[];
  let harness: WalRedoHarness;
  let client: GrpcClient;

  const requestOf = (c: PageCase, id: number, baseImage = c.baseImage) => ({
    request_id: String(id),
    tenant_id: "grpc-js",
    pg_major: 15,
    tag: { spc_oid: workload.spcOid, db_oid: workload.dbOid, rel_number: c.relation.relNumber, fork: 0, block_number: c.blockNumber },
    ...(baseImage ? { base_image: Buffer.from(baseImage) } : {}),
    records: c.records.map((r) => ({ end_lsn: r.endLsn.toString(), record: Buffer.from(r.record) })),
  });

  beforeAll(async () => {
    [workload, harness] = await Promise.all([runWalWorkload({ pgbenchScale: 1, pgbenchTransactions: 20 }), startWalRedoHarness({})]);
    cases = (await buildPageCases(workload)).slice(0, 40);
    const definition = protoLoader.loadSync("pgmesh/walredo/v1/walredo.proto", {
      includeDirs: [resolve(import.meta.dirname, "../proto")], keepCase: true, longs: String, defaults: true, oneofs: true,
    });
    const loaded = grpc.loadPackageDefinition(definition) as unknown as {
      pgmesh: { walredo: { v1: { WalRedoService: new (address: string, credentials: grpc.ChannelCredentials, options?: object) => GrpcClient } } };
    };
    client = new loaded.pgmesh.walredo.v1.WalRedoService(new URL(harness.server.url).host, grpc.credentials.createInsecure(), {
      "grpc.max_receive_message_length": 64 * 1024 * 1024,
      "grpc.max_send_message_length": 64 * 1024 * 1024,
    });
  });

  afterAll(async () => {
    client?.close();
    await harness?.close();
    await workload?.cleanup();
  });

  it("pipelines requests on a Redo stream and gets every page back by request id", async () => {
    const responses = await new Promise<GrpcRedoResponse[]>((resolveAll, reject) => {
      const got: GrpcRedoResponse[] = [];
      const call = client.Redo();
      call.on("data", (r: GrpcRedoResponse) => got.push(r));
      call.on("error", reject);
      call.on("end", () => resolveAll(got));
      cases.forEach((c, i) => call.write(requestOf(c, i)));
      call.end();
    });
    expect(responses.map((r) => Number(r.request_id)).sort((a, b) => a - b)).toEqual(cases.map((_, i) => i));
    for (const r of responses) {
      const c = cases[Number(r.request_id)]!;
      expect(r.result).toBe("page");
      expect(maskPage(c.relation.kind, r.page!, c.blockNumber).equals(maskPage(c.relation.kind, c.finalPage, c.blockNumber))).toBe(true);
    }
  });

  it("gets INVALID_ARGUMENT from RedoPage for a base image that is not a page", async () => {
    const { request_id: _id, ...request } = requestOf(cases[0]!, 0, new Uint8Array(10));
    const error = await new Promise<grpc.ServiceError | null>((r) => client.RedoPage(request, (e) => r(e)));
    expect(error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    // connect percent-encodes grpc-message fully; grpc-js undoes it with decodeURI, which keeps %2F.
    expect(decodeURIComponent(error?.details ?? "")).toMatch(/base_image of .* has 10 bytes; a page has exactly 8192/);
  });

  it("pings the tenant's process", async () => {
    const response = await new Promise<{ round_trip_us: string }>((r, j) => client.Ping({ tenant_id: "grpc-js", pg_major: 15 }, (e, res) => (e ? j(e) : r(res!))));
    expect(Number(response.round_trip_us)).toBeGreaterThan(0);
  });
});
