import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import { AuthError, type Claims } from "../auth/index.js";
import type { ServerAuth } from "../server/index.js";
import type { DeletedFiles, EndpointRefInput, Epufs, EpufsFileInfo } from "./epufs.js";
import { quoteInput } from "../errors/index.js";

type Request = IncomingMessage | Http2ServerRequest;
type Response = ServerResponse | Http2ServerResponse;

/** How HTTP requests are authenticated: the server's verifier, or none (--insecure-no-auth). */
export type EpufsHttpAuth = ServerAuth;

/** HTTP status for each code; RESOURCE_EXHAUSTED is 413 here, as these routes only refuse sizes. */
const httpStatus: Readonly<Record<Code, number>> = {
  [Code.Canceled]: 499,
  [Code.Unknown]: 500,
  [Code.InvalidArgument]: 400,
  [Code.DeadlineExceeded]: 504,
  [Code.NotFound]: 404,
  [Code.AlreadyExists]: 409,
  [Code.PermissionDenied]: 403,
  [Code.ResourceExhausted]: 413,
  [Code.FailedPrecondition]: 412,
  [Code.Aborted]: 409,
  [Code.OutOfRange]: 400,
  [Code.Unimplemented]: 501,
  [Code.Internal]: 500,
  [Code.Unavailable]: 503,
  [Code.DataLoss]: 500,
  [Code.Unauthenticated]: 401,
};

const filePattern = /^\/tenants\/([^/]+)\/timelines\/([^/]+)\/endpoints\/([^/]+)\/pgdata\/(.+)$/;
const endpointPattern = /^\/tenants\/([^/]+)\/timelines\/([^/]+)\/endpoints\/([^/]+)$/;
const timelinePattern = /^\/tenants\/([^/]+)\/timelines\/([^/]+)$/;
const tenantPattern = /^\/tenants\/([^/]+)$/;

/**
 * The RFC's plain HTTP routes, served on the RPC port through the server's
 * HTTP fallback, with a bearer token in the Authorization header:
 *   GET|POST|PUT|DELETE /tenants/<t>/timelines/<tl>/endpoints/<e>/pgdata/<path>
 *   DELETE /tenants/<t>/timelines/<tl>/endpoints/<e> | /tenants/<t>/timelines/<tl> | /tenants/<t>
 * Deletes answer {"files":N,"bytes":N}; errors {"code":"...","message":"..."}
 * with the HTTP status of the gRPC code (405 for a method a path does not
 * take). Returns false for other paths.
 */
export function createEpufsHttpRoutes(epufs: Epufs, auth: EpufsHttpAuth) {
  return async (req: Request, res: Response): Promise<boolean> => {
    const pathname = (req.url ?? "/").split("?")[0]!;
    if (!pathname.startsWith("/tenants/")) return false;
    let route;
    try {
      route = matchRoute(req.method ?? "GET", pathname);
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
      const claims = await authenticate(auth, req);
      await route(claims, req, res, abort.signal);
    } catch (error) {
      sendError(res, error);
    }
    return true;
  };

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
    let deleteRoute: ((claims: Claims | undefined) => Promise<DeletedFiles>) | undefined;
    if ((match = endpointPattern.exec(pathname))) {
      const [tenantId, timelineId, endpointId] = decodeAll(match.slice(1));
      deleteRoute = (claims) =>
        epufs.deleteEndpoint(claims, { tenantId: tenantId!, timelineId: timelineId!, endpointId: endpointId! });
    } else if ((match = timelinePattern.exec(pathname))) {
      const [tenantId, timelineId] = decodeAll(match.slice(1));
      deleteRoute = (claims) => epufs.deleteTimeline(claims, tenantId!, timelineId!);
    } else if ((match = tenantPattern.exec(pathname))) {
      const [tenantId] = decodeAll(match.slice(1));
      deleteRoute = (claims) => epufs.deleteTenant(claims, tenantId!);
    }
    if (deleteRoute === undefined) return undefined;
    if (method !== "DELETE") return "DELETE";
    const run = deleteRoute;
    return async (claims, _req, res) => sendJson(res, 200, counts(await run(claims)));
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
  const header = headerOf(req, "authorization");
  const match = header === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!match) {
    throw new ConnectError("this route needs a bearer token: send 'Authorization: Bearer <jwt>'", Code.Unauthenticated);
  }
  try {
    return await auth.verifier.verify(match[1]!);
  } catch (error) {
    if (error instanceof AuthError) throw new ConnectError(error.message, Code.Unauthenticated);
    throw error;
  }
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
  sendJson(res, httpStatus[error.code], { code, message: error.rawMessage });
}

function drainOrClose(res: Response): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    res.on("drain", done);
    res.on("close", done);
  });
}
