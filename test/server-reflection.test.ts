import { fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as v1 from "../gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { EpufsService } from "../gen/pgmesh/epufs/v1/epufs_pb.js";
import { createClientTransport, serviceOf, type ServerHandle } from "../src/server/index.js";
import { startTestServer } from "./helpers/test-server.js";

type Request = v1.ServerReflectionRequest["messageRequest"];

/** Sends the requests on one reflection v1 stream and returns the answers in order. */
async function reflect(server: ServerHandle, ...requests: Request[]): Promise<v1.ServerReflectionResponse["messageResponse"][]> {
  const client = createClient(v1.ServerReflection, createClientTransport({ baseUrl: server.url }));
  const answers = [];
  for await (const res of client.serverReflectionInfo((async function* () {
    for (const messageRequest of requests) yield { messageRequest };
  })())) {
    answers.push(res.messageResponse);
  }
  return answers;
}

function fileNames(answer: v1.ServerReflectionResponse["messageResponse"]): string[] {
  if (answer.case !== "fileDescriptorResponse") throw new Error(`expected files, got ${answer.case}`);
  return answer.value.fileDescriptorProto.map((b) => fromBinary(FileDescriptorProtoSchema, b).name);
}

describe("server reflection", () => {
  let server: ServerHandle;

  beforeAll(async () => {
    server = await startTestServer({ services: [serviceOf({ service: EpufsService, impl: {} })] });
  });
  afterAll(() => server.close());

  it("sends the file of a method with its transitive imports, then only what the stream has not had", async () => {
    const [first, second] = await reflect(
      server,
      { case: "fileContainingSymbol", value: "pgmesh.epufs.v1.EpufsService.PutFile" },
      { case: "fileByFilename", value: "pgmesh/common/v1/common.proto" },
    );
    expect(fileNames(first!).sort()).toEqual([
      "google/protobuf/timestamp.proto",
      "pgmesh/common/v1/common.proto",
      "pgmesh/epufs/v1/epufs.proto",
    ]);
    expect(fileNames(second!)).toEqual(["pgmesh/common/v1/common.proto"]);
  });

  it("finds the file of a message, a field and an enum value", async () => {
    const answers = await reflect(
      server,
      { case: "fileContainingSymbol", value: "pgmesh.epufs.v1.FileInfo" },
      { case: "fileContainingSymbol", value: "grpc.health.v1.HealthCheckResponse.status" },
      { case: "fileContainingSymbol", value: "grpc.health.v1.HealthCheckResponse.SERVING" },
    );
    expect(answers.map((a) => fileNames(a)[0])).toEqual([
      "pgmesh/epufs/v1/epufs.proto",
      "grpc/health/v1/health.proto",
      "grpc/health/v1/health.proto",
    ]);
  });

  it("answers NOT_FOUND for a symbol or a file it does not serve", async () => {
    const answers = await reflect(
      server,
      { case: "fileContainingSymbol", value: "pgmesh.walredo.v1.WalRedoService" },
      { case: "fileByFilename", value: "pgmesh/walredo/v1/walredo.proto" },
    );
    expect(answers).toEqual([
      expect.objectContaining({ case: "errorResponse", value: expect.objectContaining({ errorCode: 5, errorMessage: 'symbol "pgmesh.walredo.v1.WalRedoService" not found' }) }),
      expect.objectContaining({ case: "errorResponse", value: expect.objectContaining({ errorCode: 5, errorMessage: 'file "pgmesh/walredo/v1/walredo.proto" not found' }) }),
    ]);
  });

  it("lists no extension numbers for a known message and NOT_FOUND for an unknown one", async () => {
    const [known, unknown] = await reflect(
      server,
      { case: "allExtensionNumbersOfType", value: "pgmesh.epufs.v1.FileInfo" },
      { case: "allExtensionNumbersOfType", value: "pgmesh.epufs.v1.Nothing" },
    );
    expect(known).toMatchObject({ case: "allExtensionNumbersResponse", value: { baseTypeName: "pgmesh.epufs.v1.FileInfo", extensionNumber: [] } });
    expect(unknown).toMatchObject({ case: "errorResponse", value: { errorCode: 5 } });
  });

  it("answers v1alpha with the same content", async () => {
    const client = createClient(v1alpha.ServerReflection, createClientTransport({ baseUrl: server.url }));
    const names: string[] = [];
    for await (const res of client.serverReflectionInfo((async function* () {
      yield { messageRequest: { case: "listServices" as const, value: "" } };
    })())) {
      if (res.messageResponse.case === "listServicesResponse") names.push(...res.messageResponse.value.service.map((s) => s.name));
    }
    expect(names).toEqual([
      "pgmesh.epufs.v1.EpufsService",
      "grpc.health.v1.Health",
      "grpc.reflection.v1.ServerReflection",
      "grpc.reflection.v1alpha.ServerReflection",
    ]);
  });
});
