import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { serviceOf, type ServiceRegistration } from "../server/index.js";
import { ExtensionStoreService } from "../../gen/pgmesh/extensionstore/v1/extension_store_pb.js";
import type { BundleCache } from "./bundle-cache.js";
import { extensionStorePublicMethods } from "./extension-store-service.js";

/**
 * The cache mode serves DownloadBundle only; every other method answers
 * UNIMPLEMENTED naming the upstream store to call instead (a cache node holds
 * no catalog, and proxying admin calls through it would widen who can reach them).
 */
export function bundleCacheRegistration(cache: BundleCache, upstreamAddress: string): ServiceRegistration {
  const impl: Partial<ServiceImpl<typeof ExtensionStoreService>> = {};
  for (const method of ExtensionStoreService.methods) {
    (impl as Record<string, unknown>)[method.localName] = () => {
      throw new ConnectError(
        `this extension-store is a node-local cache of ${upstreamAddress} and serves DownloadBundle only; call ${method.name} on ${upstreamAddress}`,
        Code.Unimplemented,
      );
    };
  }
  impl.downloadBundle = (request, ctx) => cache.download(request, ctx.signal);
  return serviceOf({ service: ExtensionStoreService, impl, publicMethods: extensionStorePublicMethods });
}
