import type { DescService } from "@bufbuild/protobuf";
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";

/** A gRPC client of one pgmesh service plus the HTTP/2 session to close after use. */
export interface ServiceClient<S extends DescService> {
  readonly client: Client<S>;
  close(): void;
}

/**
 * A gRPC (HTTP/2 cleartext) client for `host:port` that sends `token` as a
 * bearer token; compression stays off so byte streams keep their backpressure.
 */
export function openServiceClient<S extends DescService>(service: S, addr: string, token: string): ServiceClient<S> {
  const baseUrl = `http://${addr}`;
  const sessionManager = new Http2SessionManager(baseUrl);
  const transport = createGrpcTransport({
    baseUrl,
    sessionManager,
    acceptCompression: [],
    interceptors: token
      ? [(next) => (req) => {
          req.header.set("authorization", `Bearer ${token}`);
          return next(req);
        }]
      : [],
  });
  return {
    client: createClient(service, transport),
    close: () => sessionManager.abort(),
  };
}
