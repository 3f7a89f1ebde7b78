import { createReadStream } from "node:fs";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import type {
  ExtensionStoreService,
  PublishExtensionHeader,
  PublishExtensionRequestSchema,
  PublishExtensionResponse,
} from "../../gen/pgmesh/extensionstore/v1/extension_store_pb.js";
import { writeDeterministicTar } from "./deterministic-tar.js";
import type { PackSource } from "./pack-sources.js";

/** A bundle file the packer wrote. */
export interface PackedBundle {
  readonly name: string;
  readonly version: string;
  readonly sha256: string;
  readonly size: number;
  readonly path: string;
}

/** Writes the source's files as a deterministic bundle tar at `outPath`, then disposes of the source. */
export async function packExtension(source: PackSource, outPath: string): Promise<PackedBundle> {
  try {
    const { sha256, size } = await writeDeterministicTar(source.files, outPath);
    return { name: source.name, version: source.version, sha256, size, path: outPath };
  } finally {
    await source.dispose();
  }
}

/** Chunk size of uploads: well under the 1 MiB message limit. */
const uploadChunkBytes = 256 * 1024;

/** The header fields a publisher chooses; name and sha256 come from the bundle. */
export type PublishHeaderFields = Partial<Omit<PublishExtensionHeader, "$typeName" | "$unknown" | "name" | "sha256">>;

/** PublishExtension of a bundle file: the header (with the file's sha256 declared), then its bytes. */
export async function publishBundleFile(
  client: Client<typeof ExtensionStoreService>,
  bundle: PackedBundle,
  header: PublishHeaderFields,
): Promise<PublishExtensionResponse> {
  async function* requests(): AsyncGenerator<MessageInitShape<typeof PublishExtensionRequestSchema>> {
    yield { msg: { case: "header", value: { ...header, name: bundle.name, sha256: bundle.sha256 } } };
    for await (const chunk of createReadStream(bundle.path, { highWaterMark: uploadChunkBytes })) {
      yield { msg: { case: "chunk", value: chunk as Buffer } };
    }
  }
  return client.publishExtension(requests());
}
