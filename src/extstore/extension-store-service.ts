import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { requireClaims } from "../auth/index.js";
import { serviceOf, type ServiceRegistration } from "../server/index.js";
import { ExtensionStoreService } from "../../gen/pgmesh/extensionstore/v1/extension_store_pb.js";
import type { ExtensionStore } from "./extension-store.js";

/** DownloadBundle needs no bearer token: its download_token is checked by the store itself. */
export const extensionStorePublicMethods: readonly string[] = ["DownloadBundle"];

/** Adapts an ExtensionStore to connect's handler shape: claims from the call, its abort signal. */
export function extensionStoreServiceImpl(store: ExtensionStore): ServiceImpl<typeof ExtensionStoreService> {
  const caller = (ctx: HandlerContext) => requireClaims(ctx);
  return {
    publishExtension: (requests, ctx) => store.publish(requests, caller(ctx), ctx.signal),
    reviewExtension: (request, ctx) => store.review(request, caller(ctx)),
    listExtensions: (request, ctx) => store.list(request, caller(ctx)),
    getExtension: (request, ctx) => store.get(request, caller(ctx)),
    grantExtension: (request, ctx) => store.grant(request, caller(ctx)),
    revokeExtension: (request, ctx) => store.revoke(request, caller(ctx)),
    listGrants: (request, ctx) => store.listGrants(request, caller(ctx)),
    getComputeIndex: (request, ctx) => store.computeIndex(request, caller(ctx)),
    exportRemoteExtensions: (request, ctx) => store.exportRemoteExtensions(request, caller(ctx)),
    issueDownloadToken: (request, ctx) => store.issueDownloadToken(request, caller(ctx)),
    downloadBundle: (request, ctx) => store.download(request, ctx.signal),
  };
}

/** The store as one service for startServer(). */
export function extensionStoreRegistration(store: ExtensionStore): ServiceRegistration {
  return serviceOf({
    service: ExtensionStoreService,
    impl: extensionStoreServiceImpl(store),
    publicMethods: extensionStorePublicMethods,
  });
}
