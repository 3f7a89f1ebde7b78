import { create } from "@bufbuild/protobuf";
import { ConnectError, type Client } from "@connectrpc/connect";
import { extract } from "tar-stream";
import { EndpointRefSchema, type EndpointRef } from "../../gen/pgmesh/common/v1/common_pb.js";
import type { EpufsService, FileInfo, PutFileRequest } from "../../gen/pgmesh/epufs/v1/epufs_pb.js";

export type EpufsClient = Client<typeof EpufsService>;

export function endpointRef(tenantId: string, timelineId: string, endpointId: string): EndpointRef {
  return create(EndpointRefSchema, { tenantId, timelineId, endpointId });
}

/** Puts `data` as a header then chunks of `chunkBytes`; `size` declares the size in the header. */
export async function putFile(
  client: EpufsClient,
  endpoint: EndpointRef,
  path: string,
  data: Uint8Array,
  options: { readonly chunkBytes?: number; readonly size?: number; readonly signal?: AbortSignal } = {},
): Promise<FileInfo> {
  const chunkBytes = options.chunkBytes ?? 64 * 1024;
  async function* requests(): AsyncGenerator<PutFileRequest> {
    yield {
      $typeName: "pgmesh.epufs.v1.PutFileRequest",
      msg: {
        case: "header",
        value: {
          $typeName: "pgmesh.epufs.v1.PutFileHeader",
          endpoint,
          path,
          ...(options.size !== undefined ? { size: BigInt(options.size) } : {}),
        },
      },
    };
    for (let offset = 0; offset < data.byteLength; offset += chunkBytes) {
      yield {
        $typeName: "pgmesh.epufs.v1.PutFileRequest",
        msg: { case: "chunk", value: data.subarray(offset, offset + chunkBytes) },
      };
    }
  }
  const response = await client.putFile(requests(), options.signal ? { signal: options.signal } : {});
  return response.file!;
}

export interface GotFile {
  readonly info: FileInfo;
  readonly notModified: boolean;
  readonly data: Buffer;
  readonly chunkSizes: number[];
}

export async function getFile(client: EpufsClient, endpoint: EndpointRef, path: string, ifNoneMatch = ""): Promise<GotFile> {
  let info: FileInfo | undefined;
  let notModified = false;
  const chunks: Uint8Array[] = [];
  for await (const message of client.getFile({ endpoint, path, ifNoneMatch })) {
    if (message.msg.case === "info") {
      if (info) throw new Error("a second info message");
      info = message.msg.value;
      notModified = message.notModified;
    } else if (message.msg.case === "chunk") {
      if (!info) throw new Error("a chunk before the info message");
      chunks.push(message.msg.value);
    }
  }
  if (!info) throw new Error("no info message");
  return { info, notModified, data: Buffer.concat(chunks), chunkSizes: chunks.map((chunk) => chunk.byteLength) };
}

/** The endpoint's archive, extracted: path -> content, plus each entry's mode. */
export async function getArchive(
  client: EpufsClient,
  endpoint: EndpointRef,
): Promise<{ files: Map<string, Buffer>; modes: Map<string, number>; bytes: number }> {
  const parts: Uint8Array[] = [];
  for await (const message of client.getEndpointArchive({ endpoint })) parts.push(message.chunk);
  const tar = Buffer.concat(parts);
  return { ...(await untar(tar)), bytes: tar.length };
}

export async function untar(tar: Buffer): Promise<{ files: Map<string, Buffer>; modes: Map<string, number> }> {
  const files = new Map<string, Buffer>();
  const modes = new Map<string, number>();
  const extractor = extract();
  const done = (async () => {
    for await (const entry of extractor) {
      const chunks: Buffer[] = [];
      for await (const chunk of entry) chunks.push(chunk as Buffer);
      files.set(entry.header.name, Buffer.concat(chunks));
      modes.set(entry.header.name, entry.header.mode);
    }
  })();
  extractor.end(tar);
  await done;
  return { files, modes };
}

/** The ConnectError a promise rejects with (fails the test when it resolves). */
export async function connectErrorOf(promise: Promise<unknown>): Promise<ConnectError> {
  try {
    await promise;
  } catch (error) {
    return ConnectError.from(error);
  }
  throw new Error("expected the call to fail, it succeeded");
}

/** Deterministic pseudo-random content. */
export function content(size: number, seed: number): Buffer {
  const data = Buffer.alloc(size);
  let x = seed * 2654435761 + 1;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    data[i] = x >>> 24;
  }
  return data;
}
