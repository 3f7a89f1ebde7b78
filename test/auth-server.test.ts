import { generateKeyPairSync } from "node:crypto";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { Code, createClient, type Client, type ServiceImpl } from "@connectrpc/connect";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import { EpufsService } from "../gen/pgmesh/epufs/v1/epufs_pb.js";
import { requireClaims, requireEndpointAccess, signingKeyFrom, signToken, type SigningKey } from "../src/auth/index.js";
import { createClientTransport, serviceOf, type ServerHandle } from "../src/server/index.js";
import { callFailure } from "./helpers/call-failure.js";
import { createTestKeys, type TestKeys } from "./helpers/test-keys.js";
import { startTestServer } from "./helpers/test-server.js";

const protoDir = fileURLToPath(new URL("../proto", import.meta.url));
const endpoint = { tenantId: "t1", timelineId: "tl1", endpointId: "e1" };

/** ListFiles answers with the call's claims (JSON) after an endpoint check; DeleteTenant and DeleteTimeline are public. */
const echoClaims: Partial<ServiceImpl<typeof EpufsService>> = {
  listFiles(req, ctx) {
    const claims = requireClaims(ctx);
    requireEndpointAccess(claims, {
      tenantId: req.endpoint?.tenantId ?? "",
      timelineId: req.endpoint?.timelineId ?? "",
      endpointId: req.endpoint?.endpointId ?? "",
    });
    return { files: [{ path: JSON.stringify(claims ?? null) }] };
  },
  deleteTenant() {
    return {};
  },
  deleteTimeline(_req, ctx) {
    requireClaims(ctx);
    return {};
  },
};
const registration = serviceOf({ service: EpufsService, impl: echoClaims, publicMethods: ["DeleteTenant", "DeleteTimeline"] });

function epufs(server: ServerHandle, token?: string): Client<typeof EpufsService> {
  return createClient(EpufsService, createClientTransport({ baseUrl: server.url, ...(token !== undefined ? { token } : {}) }));
}

/** An Ed25519 key the server does not know. */
async function strangerKey(): Promise<SigningKey> {
  return signingKeyFrom(generateKeyPairSync("ed25519").privateKey);
}

describe("auth interceptor", () => {
  let keys: TestKeys;
  let server: ServerHandle;

  beforeAll(async () => {
    keys = await createTestKeys();
    server = await startTestServer({ keys, services: [registration] });
  });
  afterAll(async () => {
    await server.close();
    await keys.remove();
  });

  it("puts the verified claims in the call context", async () => {
    const res = await epufs(server, await keys.computeToken("t1", "tl1", "e1")).listFiles({ endpoint });
    expect(JSON.parse(res.files[0]!.path)).toMatchObject({ scope: "compute", tenantId: "t1", timelineId: "tl1", endpointId: "e1" });
  });

  it("refuses a call without a token with UNAUTHENTICATED", async () => {
    const err = await callFailure(epufs(server).listFiles({ endpoint }));
    expect(err.code).toBe(Code.Unauthenticated);
    expect(err.rawMessage).toBe("missing bearer token: send 'authorization: Bearer <jwt>'");
  });

  it("refuses a streaming call without a token before the handler runs", async () => {
    const err = await callFailure(epufs(server).getFile({ endpoint, path: "pg_stat/pgstat.stat" }));
    expect(err.code).toBe(Code.Unauthenticated);
  });

  it("refuses an authorization header that is not Bearer", async () => {
    const transport = createClientTransport({
      baseUrl: server.url,
      interceptors: [
        (next) => (req) => {
          req.header.set("authorization", "Basic dXNlcjpwdw==");
          return next(req);
        },
      ],
    });
    const err = await callFailure(createClient(EpufsService, transport).listFiles({ endpoint }));
    expect(err.code).toBe(Code.Unauthenticated);
    expect(err.rawMessage).toContain("malformed authorization header");
  });

  it("refuses a bearer token that is not a JWT", async () => {
    const err = await callFailure(epufs(server, "not-a-jwt").listFiles({ endpoint }));
    expect(err.code).toBe(Code.Unauthenticated);
    expect(err.rawMessage).toContain("not a JWT");
  });

  describe("an oversized bearer token", () => {
    const tokenOf = (bytes: number) => "a".repeat(bytes);
    const sizeLimit = (bytes: number) => `bearer token of ${bytes} bytes is over the limit of 8192 bytes (8 KiB)`;
    /** Node's HTTP/2 (nghttp2) cannot decode one header field much over 100 KiB: it ends the connection. */
    const largestHttp2Header = 100 * 1024;

    it("is refused with UNAUTHENTICATED naming the size limit, over HTTP/2", async () => {
      const transport = createGrpcTransport({
        baseUrl: server.url,
        // Node's HTTP/2 client sends at most 64 KiB of headers unless told otherwise.
        sessionManager: new Http2SessionManager(server.url, undefined, { maxSendHeaderBlockLength: 1024 * 1024 }),
        interceptors: [
          (next) => (req) => {
            req.header.set("authorization", `Bearer ${tokenOf(largestHttp2Header)}`);
            return next(req);
          },
        ],
      });
      const err = await callFailure(createClient(EpufsService, transport).listFiles({ endpoint }));
      expect(Code[err.code], err.rawMessage).toBe("Unauthenticated");
      expect(err.rawMessage).toBe(sizeLimit(largestHttp2Header));
    });

    it("is refused with UNAUTHENTICATED naming the size limit at 1 MiB, over HTTP/1.1", async () => {
      const res = await fetch(`${server.url}/pgmesh.epufs.v1.EpufsService/ListFiles`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${tokenOf(1024 * 1024)}` },
        body: JSON.stringify({ endpoint }),
      });
      expect(res.status).toBe(401);
      expect(await res.json()).toEqual({ code: "unauthenticated", message: sizeLimit(1024 * 1024) });
    });

    it("is not sent by pgmesh's client transport, which answers UNAUTHENTICATED naming the limit", async () => {
      const err = await callFailure(epufs(server, tokenOf(1024 * 1024)).listFiles({ endpoint }));
      expect(Code[err.code]).toBe("Unauthenticated");
      expect(err.rawMessage).toBe(sizeLimit(1024 * 1024));
    });

    it("is refused with UNAUTHENTICATED naming the size limit, to a @grpc/grpc-js client", async () => {
      const definition = protoLoader.loadSync(["pgmesh/epufs/v1/epufs.proto"], { includeDirs: [protoDir], keepCase: true });
      const loaded = grpc.loadPackageDefinition(definition) as unknown as {
        pgmesh: { epufs: { v1: { EpufsService: grpc.ServiceClientConstructor } } };
      };
      const client = new loaded.pgmesh.epufs.v1.EpufsService(`127.0.0.1:${server.address.port}`, grpc.credentials.createInsecure());
      const metadata = new grpc.Metadata();
      metadata.set("authorization", `Bearer ${tokenOf(largestHttp2Header)}`);
      try {
        const err = await new Promise<grpc.ServiceError>((resolve, reject) =>
          (client as unknown as Record<string, (r: object, m: grpc.Metadata, cb: (e: grpc.ServiceError | null) => void) => void>)
            .ListFiles!({ endpoint }, metadata, (e) => (e ? resolve(e) : reject(new Error("the call succeeded")))),
        );
        expect(grpc.status[err.code]).toBe("UNAUTHENTICATED");
        expect(err.details).toBe(sizeLimit(largestHttp2Header));
      } finally {
        client.close();
      }
    });
  });

  it("refuses a token expired longer ago than the 30 s clock skew", async () => {
    const token = await keys.mint({ scope: "compute", ...endpoint }, { ttlSec: -60 });
    const err = await callFailure(epufs(server, token).listFiles({ endpoint }));
    expect(err.code).toBe(Code.Unauthenticated);
    expect(err.rawMessage).toMatch(/^token expired at .*; mint a new one$/);
  });

  it("accepts a token expired within the 30 s clock skew", async () => {
    const token = await keys.mint({ scope: "compute", ...endpoint }, { ttlSec: -10 });
    const res = await epufs(server, token).listFiles({ endpoint });
    expect(JSON.parse(res.files[0]!.path).scope).toBe("compute");
  });

  it("refuses a token whose signature does not verify", async () => {
    const forged = { ...(await strangerKey()), kid: keys.kid };
    const token = await signToken(forged, { scope: "admin" }, { ttlSec: 600 });
    const err = await callFailure(epufs(server, token).listFiles({ endpoint }));
    expect(err.code).toBe(Code.Unauthenticated);
    expect(err.rawMessage).toContain("signature does not verify");
  });

  it("refuses a token signed with a key the server does not know", async () => {
    const stranger = await strangerKey();
    const token = await signToken(stranger, { scope: "admin" }, { ttlSec: 600 });
    const err = await callFailure(epufs(server, token).listFiles({ endpoint }));
    expect(err.code).toBe(Code.Unauthenticated);
    expect(err.rawMessage).toBe(`token is signed with key "${stranger.kid}", which this server does not know (--auth-keys)`);
  });

  it("refuses a token with a scope that is not compute, control_plane or admin", async () => {
    const token = await new SignJWT({ scope: "superuser" })
      .setProtectedHeader({ alg: "EdDSA", kid: keys.kid })
      .setExpirationTime("10m")
      .sign(keys.signingKey.key);
    const err = await callFailure(epufs(server, token).listFiles({ endpoint }));
    expect(err.code).toBe(Code.Unauthenticated);
    expect(err.rawMessage).toBe('token scope "superuser" is not one of compute, control_plane, admin');
  });

  it("refuses a token without exp", async () => {
    const token = await new SignJWT({ scope: "admin" }).setProtectedHeader({ alg: "EdDSA", kid: keys.kid }).sign(keys.signingKey.key);
    const err = await callFailure(epufs(server, token).listFiles({ endpoint }));
    expect(err.code).toBe(Code.Unauthenticated);
    expect(err.rawMessage).toContain('"exp"');
  });

  it("answers PERMISSION_DENIED naming the claim when a compute token is for another endpoint", async () => {
    const token = await keys.computeToken("t1", "tl1", "e2");
    const err = await callFailure(epufs(server, token).listFiles({ endpoint }));
    expect(err.code).toBe(Code.PermissionDenied);
    expect(err.rawMessage).toBe('the compute token is for endpoint_id "e2", not endpoint_id "e1"');
  });

  it("lets a control_plane token act on any tenant's endpoint", async () => {
    const token = await keys.mint({ scope: "control_plane" });
    const res = await epufs(server, token).listFiles({ endpoint: { tenantId: "other", timelineId: "x", endpointId: "y" } });
    expect(JSON.parse(res.files[0]!.path).scope).toBe("control_plane");
  });

  it("asks a client transport's token function for a token on every call", async () => {
    const tenants = ["t1", "t2"];
    const transport = createClientTransport({ baseUrl: server.url, token: () => keys.computeToken(tenants.shift()!, "tl1", "e1") });
    const client = createClient(EpufsService, transport);
    await client.listFiles({ endpoint });
    const err = await callFailure(client.listFiles({ endpoint }));
    expect(err.rawMessage).toBe('the compute token is for tenant_id "t2", not tenant_id "t1"');
  });

  it("serves health and reflection without a token", async () => {
    const health = createClient(Health, createClientTransport({ baseUrl: server.url }));
    expect((await health.check({})).status).toBe(ServingStatus.SERVING);
  });

  it("serves a public method without a token", async () => {
    await expect(epufs(server).deleteTenant({ tenantId: "t1" })).resolves.toBeDefined();
  });

  it("answers UNAUTHENTICATED when a public method still asks for claims", async () => {
    const err = await callFailure(epufs(server).deleteTimeline({ tenantId: "t1", timelineId: "tl1" }));
    expect(err.code).toBe(Code.Unauthenticated);
  });
});

describe("insecure server", () => {
  let server: ServerHandle;

  beforeAll(async () => {
    server = await startTestServer({ services: [registration] });
  });
  afterAll(() => server.close());

  it("accepts calls without a token and gives handlers no claims", async () => {
    const res = await epufs(server).listFiles({ endpoint });
    expect(res.files[0]!.path).toBe("null");
  });

  it("does not read a token that is sent anyway", async () => {
    const res = await epufs(server, "not-a-jwt").listFiles({ endpoint });
    expect(res.files[0]!.path).toBe("null");
  });
});
