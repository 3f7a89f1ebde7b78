import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { requireClaims } from "../auth/index.js";
import { DeletedCountsSchema, type DeletedCounts } from "../../gen/pgmesh/common/v1/common_pb.js";
import {
  EpufsService,
  FileInfoSchema,
  type FileInfo,
  type PutFileHeader,
  type PutFileRequest,
} from "../../gen/pgmesh/epufs/v1/epufs_pb.js";
import { maxChunkBytes, splitChunks } from "../server/index.js";
import type { DeletedFiles, Epufs, EpufsFileInfo } from "./epufs.js";

/** Adapts Epufs to the generated EpufsService: messages in and out, claims from the call context. */
export function createEpufsHandlers(epufs: Epufs): ServiceImpl<typeof EpufsService> {
  return {
    async putFile(requests, ctx) {
      const claims = requireClaims(ctx);
      const iterator = requests[Symbol.asyncIterator]();
      try {
        const header = await readHeader(iterator);
        const size = header.size === undefined ? undefined : toSafeNumber("size", header.size);
        const info = await epufs.putFile(
          claims,
          { endpoint: header.endpoint, path: header.path, ...(size !== undefined ? { size } : {}) },
          contentChunks(iterator),
          ctx.signal,
        );
        return { file: toFileInfo(info) };
      } finally {
        // On an early answer (refused, over a limit) stop reading the request. Not awaited: a
        // return() queues behind a read still waiting for a stalled client.
        void Promise.resolve(iterator.return?.()).catch(() => undefined);
      }
    },

    async *getFile(request, ctx) {
      const result = await epufs.getFile(requireClaims(ctx), request.endpoint, request.path, request.ifNoneMatch, ctx.signal);
      yield { msg: { case: "info", value: toFileInfo(result.info) }, notModified: result.notModified };
      if (result.notModified) return;
      for await (const chunk of splitChunks(result.body)) yield { msg: { case: "chunk", value: chunk } };
    },

    async listFiles(request, ctx) {
      const page = await epufs.listFiles(requireClaims(ctx), request.endpoint, request.pageSize, request.pageToken);
      return { files: page.files.map(toFileInfo), nextPageToken: page.nextPageToken };
    },

    async *getEndpointArchive(request, ctx: HandlerContext) {
      const archive = epufs.getEndpointArchive(requireClaims(ctx), request.endpoint, ctx.signal);
      for await (const chunk of splitChunks(archive)) yield { chunk };
    },

    async deleteFile(request, ctx) {
      return { deleted: toDeletedCounts(await epufs.deleteFile(requireClaims(ctx), request.endpoint, request.path)) };
    },

    async deleteEndpoint(request, ctx) {
      return { deleted: toDeletedCounts(await epufs.deleteEndpoint(requireClaims(ctx), request.endpoint)) };
    },

    async deleteTimeline(request, ctx) {
      const deleted = await epufs.deleteTimeline(requireClaims(ctx), request.tenantId, request.timelineId);
      return { deleted: toDeletedCounts(deleted) };
    },

    async deleteTenant(request, ctx) {
      return { deleted: toDeletedCounts(await epufs.deleteTenant(requireClaims(ctx), request.tenantId)) };
    },
  };
}

async function readHeader(iterator: AsyncIterator<PutFileRequest>): Promise<PutFileHeader> {
  const first = await iterator.next();
  if (first.done) {
    throw new ConnectError("PutFile stream ended before its header; send a header message first", Code.InvalidArgument);
  }
  if (first.value.msg.case !== "header") {
    throw new ConnectError("PutFile stream must start with a header message, then chunks", Code.InvalidArgument);
  }
  return first.value.msg.value;
}

/** The chunks after the header; a second header or an oversized chunk is INVALID_ARGUMENT. */
async function* contentChunks(iterator: AsyncIterator<PutFileRequest>): AsyncGenerator<Uint8Array> {
  for (;;) {
    const next = await iterator.next();
    if (next.done) return;
    const msg = next.value.msg;
    if (msg.case === "chunk") {
      if (msg.value.byteLength > maxChunkBytes) {
        throw new ConnectError(
          `a chunk of ${msg.value.byteLength} bytes is larger than ${maxChunkBytes} bytes; send the content in chunks of at most 1 MiB`,
          Code.InvalidArgument,
        );
      }
      yield msg.value;
    } else {
      throw new ConnectError("PutFile stream carries a second header; send exactly one header, first", Code.InvalidArgument);
    }
  }
}

function toSafeNumber(field: string, value: bigint): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new ConnectError(`${field} ${value} is too large`, Code.InvalidArgument);
  }
  return Number(value);
}

function toFileInfo(info: EpufsFileInfo): FileInfo {
  return create(FileInfoSchema, {
    path: info.path,
    size: BigInt(info.size),
    version: info.version,
    modifiedTime: timestampFromDate(info.modified),
  });
}

function toDeletedCounts(deleted: DeletedFiles): DeletedCounts {
  return create(DeletedCountsSchema, { objects: BigInt(deleted.files), bytes: BigInt(deleted.bytes) });
}
