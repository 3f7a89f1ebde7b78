import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import { codeToHttpStatus } from "@connectrpc/connect/protocol-connect";
import { AuthError, type Claims } from "../auth/index.js";
import { resourceIdPattern } from "../ids/index.js";
import { drainOrClose, type ServerAuth } from "../server/index.js";
import type { DeletedFiles, EndpointRefInput, Epufs, EpufsFileInfo } from "./epufs.js";
import { quoteInput } from "../errors/index.js";

type Request = IncomingMessage | Http2ServerRequest;
type Response = ServerResponse | Http2ServerResponse;

/** How HTTP requests are authenticated: the server's verifier, or none (--insecure-no-auth). */
export type EpufsHttpAuth = ServerAuth;

/**
 * connect's own mapping of codes to HTTP statuses, with one override:
 * RESOURCE_EXHAUSTED is 413 (Content Too Large), not 429, as these routes
 * refuse only sizes and quotas, never a rate.
 */
function httpStatusOf(code: Code): number {
  return code === Code.ResourceExhausted ? 413 : codeToHttpStatus(code);
}

const filePattern = /^\/tenants\/([^/]+)\/timelines\/([^/]+)\/endpoints\/([^/]+)\/pgdata\/(.+)$/;
const endpointPattern = /^\/tenants\/([^/]+)\/timelines\/([^/]+)\/endpoints\/([^/]+)$/;
const timelinePattern = /^\/tenants\/([^/]+)\/timelines\/([^/]+)$/;
const tenantPattern = /^\/tenants\/([^/]+)$/;

/** The ids a Neon endpoint_storage token must carry, equal to its route's: timeline and endpoint only where the route has them. */
interface NeonClaims {
  readonly tenant_id: string;
  readonly timeline_id?: string;
  readonly endpoint_id?: string;
}

/**
 * The plain HTTP routes, served on the RPC port through the server's HTTP
 * fallback, with a bearer token in the Authorization header. The RFC's:
 *   GET|POST|PUT|DELETE /tenants/<t>/timelines/<tl>/endpoints/<e>/pgdata/<path>
 *   DELETE /tenants/<t>/timelines/<tl>/endpoints/<e> | /tenants/<t>/timelines/<tl> | /tenants/<t>
 * with pgmesh's scoped tokens; and Neon's endpoint_storage routes:
 *   GET|PUT|DELETE /<t>/<tl>/<e>/<path>
 *   DELETE /<t>[/<tl>[/<e>]]
 *   GET /status
 * whose tokens need no scope: their tenant_id, timeline_id and endpoint_id
 * claims must equal the route's (as in Neon; a prefix delete's token has
 * exactly the ids its route has). Ids in Neon's routes follow the shared id
 * rule, so the RFC's /tenants/… and gRPC paths never read as one.
 * Prefix deletes answer {"tenant":…[,"timeline":…[,"endpoint":…]],"deleted":{"files":N,"bytes":N}},
 * a file delete {"files":N,"bytes":N}; errors {"code":"...","message":"..."}
 * with the HTTP status of the gRPC code (405 for a method a path does not
 * take). Returns false for other paths.
 */
export function createEpufsHttpRoutes(epufs: Epufs, auth: EpufsHttpAuth) {
  return async (req: Request, res: Response): Promise<boolean> => {
    const pathname = (req.url ?? "/").split("?")[0]!;
    if (pathname === "/status" && (req.method === "GET" || req.method === "HEAD")) {
      res.writeHead(200, { "content-length": "0" });
      res.end();
      return true;
    }
    let route;
    try {
      route = pathname.startsWith("/tenants/") ? matchRoute(req.method ?? "GET", pathname) : matchNeonRoute(req.method ?? "GET", pathname);
    } catch (error) {
      // Bad percent-encoding in the path: refused before auth, as no route can take it.
      sendError(res, error);
      return true;
    }
    if (route === undefined) return false;
    const abort = new AbortController();
    res.once("close", () => abort.abort(new ConnectError("the client closed the request", Code.Canceled)));
    if (typeof route === "string") {
      sendJson(res, 405, { code: "method_not_allowed", message: `${req.method} is not allowed here; use ${route}` }, {
        allow: route.replace(/ or /g, ", "),
      });
      return true;
    }
    try {
      if ("neon" in route) {
        await authenticateNeon(auth, req, route.neon);
        // The token covers exactly this route: the service checks nothing more.
        await route.handler(undefined, req, res, abort.signal);
      } else {
        await route(await authenticate(auth, req), req, res, abort.signal);
      }
    } catch (error) {
      sendError(res, error);
    }
    return true;
  };

  /** Neon's endpoint_storage routes: the handler and the claims its token must carry, the allowed methods, or undefined. */
  function matchNeonRoute(method: string, pathname: string): { handler: Handler; neon: NeonClaims } | string | undefined {
    const segments = pathname.split("/").slice(1);
    const ids = segments.slice(0, 3);
    if (ids.some((id) => !resourceIdPattern.test(id))) return undefined;
    const [tenantId, timelineId, endpointId] = ids as [string, string?, string?];
    if (segments.length > 3) {
      const [path] = decodeAll([segments.slice(3).join("/")]);
      const endpoint = { tenantId, timelineId: timelineId!, endpointId: endpointId! };
      const neon = { tenant_id: tenantId, timeline_id: timelineId!, endpoint_id: endpointId! };
      switch (method) {
        case "GET":
        case "HEAD":
          return { neon, handler: (claims, req, res, signal) => getFile(claims, endpoint, path!, req, res, signal) };
        case "PUT":
          return { neon, handler: (claims, req, res, signal) => putFile(claims, endpoint, path!, req, res, signal) };
        case "DELETE":
          return { neon, handler: async (claims, _req, res) => sendJson(res, 200, counts(await epufs.deleteFile(claims, endpoint, path!))) };
        default:
          return "GET, HEAD, PUT or DELETE";
      }
    }
    // Other methods on /<id>[/<id>[/<id>]] are no route at all (404), so paths such as GET /healthz stay unclaimed.
    if (method !== "DELETE") return undefined;
    const neon = { tenant_id: tenantId, ...(timelineId ? { timeline_id: timelineId } : {}), ...(endpointId ? { endpoint_id: endpointId } : {}) };
    return { neon, handler: prefixDelete(tenantId, timelineId, endpointId) };
  }

  /** DELETE of an endpoint's, a timeline's or a tenant's files, answering what it deleted. */
  function prefixDelete(tenantId: string, timelineId?: string, endpointId?: string): Handler {
    return async (claims, _req, res) => {
      const deleted = endpointId !== undefined
        ? await epufs.deleteEndpoint(claims, { tenantId, timelineId: timelineId!, endpointId })
        : timelineId !== undefined
          ? await epufs.deleteTimeline(claims, tenantId, timelineId)
          : await epufs.deleteTenant(claims, tenantId);
      sendJson(res, 200, {
        tenant: tenantId,
        ...(timelineId !== undefined ? { timeline: timelineId } : {}),
        ...(endpointId !== undefined ? { endpoint: endpointId } : {}),
        deleted: counts(deleted),
      });
    };
  }

  /** The handler for a method and path, the allowed methods (string) when only the method is wrong, or undefined. */
  function matchRoute(method: string, pathname: string): Handler | string | undefined {
    let match = filePattern.exec(pathname);
    if (match) {
      const [tenantId, timelineId, endpointId, path] = decodeAll(match.slice(1));
      const endpoint = { tenantId: tenantId!, timelineId: timelineId!, endpointId: endpointId! };
      switch (method) {
        case "GET":
        case "HEAD":
          return (claims, req, res, signal) => getFile(claims, endpoint, path!, req, res, signal);
        case "POST":
        case "PUT":
          return (claims, req, res, signal) => putFile(claims, endpoint, path!, req, res, signal);
        case "DELETE":
          return async (claims, _req, res) => sendJson(res, 200, counts(await epufs.deleteFile(claims, endpoint, path!)));
        default:
          return "GET, HEAD, POST, PUT or DELETE";
      }
    }
    match = endpointPattern.exec(pathname) ?? timelinePattern.exec(pathname) ?? tenantPattern.exec(pathname);
    if (!match) return undefined;
    if (method !== "DELETE") return "DELETE";
    const [tenantId, timelineId, endpointId] = decodeAll(match.slice(1));
    return prefixDelete(tenantId!, timelineId, endpointId);
  }

  async function getFile(
    claims: Claims | undefined,
    endpoint: EndpointRefInput,
    path: string,
    req: Request,
    res: Response,
    signal: AbortSignal,
  ): Promise<void> {
    const ifNoneMatch = unquote(headerOf(req, "if-none-match") ?? "");
    const result = await epufs.getFile(claims, endpoint, path, ifNoneMatch, signal);
    const headers = {
      etag: `"${result.info.version}"`,
      "last-modified": result.info.modified.toUTCString(),
    };
    if (result.notModified) {
      res.writeHead(304, headers);
      res.end();
      return;
    }
    res.writeHead(200, {
      ...headers,
      "content-type": "application/octet-stream",
      "content-length": String(result.info.size),
    });
    if (req.method === "HEAD") {
      res.end();
      return;
    }
    for await (const chunk of result.body) {
      if (!(res as ServerResponse).write(chunk)) await drainOrClose(res);
      if (signal.aborted) return;
    }
    res.end();
  }

  async function putFile(
    claims: Claims | undefined,
    endpoint: EndpointRefInput,
    path: string,
    req: Request,
    res: Response,
    signal: AbortSignal,
  ): Promise<void> {
    const length = headerOf(req, "content-length");
    const size = length === undefined ? undefined : Number(length);
    if (size !== undefined && !Number.isSafeInteger(size)) {
      throw new ConnectError(`content-length ${quoteInput(length ?? "")} is not a number of bytes`, Code.InvalidArgument);
    }
    const info = await epufs.putFile(
      claims,
      { endpoint, path, ...(size !== undefined ? { size } : {}) },
      req as AsyncIterable<Uint8Array>,
      signal,
    );
    sendJson(res, 200, fileInfoJson(info), { etag: `"${info.version}"` });
  }
}

type Handler = (claims: Claims | undefined, req: Request, res: Response, signal: AbortSignal) => Promise<void>;

async function authenticate(auth: EpufsHttpAuth, req: Request): Promise<Claims | undefined> {
  if ("insecure" in auth) return undefined;
  const token = bearerToken(req);
  try {
    return await auth.verifier.verify(token);
  } catch (error) {
    if (error instanceof AuthError) throw new ConnectError(error.message, Code.Unauthenticated);
    throw error;
  }
}

/** UNAUTHENTICATED (401, as Neon answers) unless the token verifies and its ids equal the route's. */
async function authenticateNeon(auth: EpufsHttpAuth, req: Request, route: NeonClaims): Promise<void> {
  if ("insecure" in auth) return;
  let payload: Record<string, unknown>;
  try {
    payload = await auth.verifier.verifyPayload(bearerToken(req));
  } catch (error) {
    if (error instanceof AuthError) throw new ConnectError(error.message, Code.Unauthenticated);
    throw error;
  }
  for (const claim of ["tenant_id", "timeline_id", "endpoint_id"] as const) {
    if (payload[claim] !== route[claim]) {
      const want = route[claim] === undefined ? "none" : JSON.stringify(route[claim]);
      throw new ConnectError(
        `the token's ${claim} claim is ${JSON.stringify(payload[claim] ?? null)}, but this route needs ${want}`,
        Code.Unauthenticated,
      );
    }
  }
}

function bearerToken(req: Request): string {
  const header = headerOf(req, "authorization");
  const match = header === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!match) {
    throw new ConnectError("this route needs a bearer token: send 'Authorization: Bearer <jwt>'", Code.Unauthenticated);
  }
  return match[1]!;
}

function decodeAll(parts: string[]): string[] {
  return parts.map((part) => {
    try {
      return decodeURIComponent(part);
    } catch {
      throw new ConnectError(`${quoteInput(part)} is not valid percent-encoding`, Code.InvalidArgument);
    }
  });
}

function headerOf(req: Request, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function unquote(etag: string): string {
  return etag.trim().replace(/^W\//, "").replace(/^"|"$/g, "");
}

function counts(deleted: DeletedFiles): { files: number; bytes: number } {
  return { files: deleted.files, bytes: deleted.bytes };
}

function fileInfoJson(info: EpufsFileInfo) {
  return { path: info.path, size: info.size, version: info.version, modifiedTime: info.modified.toISOString() };
}

function sendJson(res: Response, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body) + "\n";
  res.writeHead(status, { ...headers, "content-type": "application/json", "content-length": String(Buffer.byteLength(text)) });
  res.end(text);
}

function sendError(res: Response, error: unknown): void {
  if (res.headersSent) {
    // Mid-body: the only honest signal left is to cut the response short.
    res.destroy(error instanceof Error ? error : undefined);
    return;
  }
  if (!(error instanceof ConnectError)) throw error;
  const code = Code[error.code].replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase();
  sendJson(res, httpStatusOf(error.code), { code, message: error.rawMessage });
}
