import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, type ServiceImpl } from "@connectrpc/connect";
import * as v1 from "../../gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import type { DescriptorIndex } from "./descriptor-index.js";

type Response = MessageInitShape<typeof v1.ServerReflectionResponseSchema>;

/** Answers one reflection request; `sent` tracks the files this stream already sent. */
function answer(index: DescriptorIndex, req: v1.ServerReflectionRequest, sent: Set<string>): Response {
  const base = { validHost: req.host, originalRequest: req };
  const notFound = (what: string): Response => ({
    ...base,
    messageResponse: { case: "errorResponse", value: { errorCode: Code.NotFound, errorMessage: `${what} not found` } },
  });
  const files = (file: Parameters<DescriptorIndex["encodeWithDependencies"]>[0]): Response => ({
    ...base,
    messageResponse: {
      case: "fileDescriptorResponse",
      value: { fileDescriptorProto: index.encodeWithDependencies(file, sent) },
    },
  });
  const r = req.messageRequest;
  switch (r.case) {
    case "listServices":
      return {
        ...base,
        messageResponse: { case: "listServicesResponse", value: { service: index.serviceNames.map((name) => ({ name })) } },
      };
    case "fileByFilename": {
      const file = index.fileByName(r.value);
      return file ? files(file) : notFound(`file "${r.value}"`);
    }
    case "fileContainingSymbol": {
      const file = index.fileContainingSymbol(r.value);
      return file ? files(file) : notFound(`symbol "${r.value}"`);
    }
    case "fileContainingExtension": {
      const ext = index
        .extensionsOf(r.value.containingType)
        .find((e) => e.number === r.value.extensionNumber);
      return ext ? files(ext.file) : notFound(`extension ${r.value.extensionNumber} of "${r.value.containingType}"`);
    }
    case "allExtensionNumbersOfType":
      if (!index.hasMessage(r.value)) return notFound(`message type "${r.value}"`);
      return {
        ...base,
        messageResponse: {
          case: "allExtensionNumbersResponse",
          value: { baseTypeName: r.value, extensionNumber: index.extensionsOf(r.value).map((e) => e.number) },
        },
      };
    default:
      return {
        ...base,
        messageResponse: {
          case: "errorResponse",
          value: { errorCode: Code.InvalidArgument, errorMessage: "reflection request names no question" },
        },
      };
  }
}

/** grpc.reflection.v1.ServerReflection over the index. */
export function createReflectionV1(index: DescriptorIndex): ServiceImpl<typeof v1.ServerReflection> {
  return {
    async *serverReflectionInfo(requests) {
      const sent = new Set<string>();
      for await (const req of requests) yield answer(index, req, sent);
    },
  };
}

/** grpc.reflection.v1alpha.ServerReflection: the same messages on the wire, converted through v1. */
export function createReflectionV1alpha(index: DescriptorIndex): ServiceImpl<typeof v1alpha.ServerReflection> {
  return {
    async *serverReflectionInfo(requests) {
      const sent = new Set<string>();
      for await (const req of requests) {
        const asV1 = fromBinary(v1.ServerReflectionRequestSchema, toBinary(v1alpha.ServerReflectionRequestSchema, req));
        const res = toBinary(v1.ServerReflectionResponseSchema, create(v1.ServerReflectionResponseSchema, answer(index, asV1, sent)));
        yield fromBinary(v1alpha.ServerReflectionResponseSchema, res);
      }
    },
  };
}
