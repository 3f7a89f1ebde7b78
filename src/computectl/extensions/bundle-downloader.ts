import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { ExtensionStoreService } from "../../../gen/pgmesh/extensionstore/v1/extension_store_pb.js";
import { createClientTransport } from "../../server/index.js";
import { baseUrlsOf } from "../compute-spec.js";

/** Streams the tar bytes of one bundle, by sha256. */
export type BundleDownloader = (sha256: string, signal: AbortSignal) => AsyncIterable<Uint8Array>;

export interface ExtensionStoreDownloaderOptions {
  /** host:port of the ExtensionStore. */
  readonly addr: string;
  /** A download token from IssueDownloadToken naming the bundles. */
  readonly downloadToken: string;
  /** Deadline of one DownloadBundle call. */
  readonly timeoutMs: number;
}

/**
 * Downloads bundles with ExtensionStoreService.DownloadBundle over gRPC
 * without compression (bytes keep their backpressure); the download token
 * travels in the request, no bearer token is sent.
 */
export function createExtensionStoreDownloader(options: ExtensionStoreDownloaderOptions): BundleDownloader {
  const client = createClient(ExtensionStoreService, createClientTransport({ baseUrl: baseUrlsOf(options.addr) }));
  return async function* download(sha256, signal) {
    let sawInfo = false;
    const messages = client.downloadBundle({ sha256, downloadToken: options.downloadToken }, { signal, timeoutMs: options.timeoutMs });
    for await (const { msg } of messages) {
      if (msg.case === "info") {
        sawInfo = true;
      } else if (msg.case === "chunk") {
        if (!sawInfo) throw new ConnectError(`the ExtensionStore at ${options.addr} sent bundle bytes before the bundle info`, Code.Internal);
        yield msg.value;
      }
    }
    if (!sawInfo) throw new ConnectError(`the ExtensionStore at ${options.addr} ended the download of ${sha256} without any bundle info`, Code.Internal);
  };
}
