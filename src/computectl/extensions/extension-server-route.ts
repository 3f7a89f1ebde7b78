import { Code, ConnectError } from "@connectrpc/connect";
import { codeToHttpStatus } from "@connectrpc/connect/protocol-connect";
import type { Logger } from "pino";
import type { FallbackHandler } from "../../server/index.js";
import type { EnsureOptions, EnsureResult } from "./extension-files.js";

/** What the route needs: ExtensionFiles.ensure. */
export interface ExtensionEnsurer {
  ensure(name: string, options?: EnsureOptions): Promise<EnsureResult>;
}

const routePrefix = "/extension_server/";

/** What both HTTP/1.1 and HTTP/2 compat responses offer. */
interface TextResponse {
  readonly writableEnded: boolean;
  writeHead(status: number, headers: Record<string, string | number>): unknown;
  end(body: string): unknown;
  on(event: "close", listener: () => void): unknown;
}

/**
 * The route the compute hook calls: POST /extension_server/<name>[?is_library=true]
 * answers 200 once the files are present; otherwise the HTTP status of the
 * error's code (Connect's mapping: 400 bad name, 403 the compute may not use
 * it, 503 store unavailable, …) with the reason as text/plain, which the hook
 * puts into its ERROR. Only callers on this host are served (loopback, or
 * an address of this host when compute-ctl listens on one; 403 otherwise). Mount it with the server's fallback handler; any other path is
 * left to the next handler (returns false).
 */
export function createExtensionServerRoute(files: ExtensionEnsurer, logger: Logger): FallbackHandler {
  return async (req, res) => {
    const url = new URL(req.url ?? "/", "http://compute-ctl");
    if (!url.pathname.startsWith(routePrefix)) return false;
    const out = res as TextResponse;
    const reply = (status: number, text: string, headers: Record<string, string> = {}) => {
      const body = `${text}\n`;
      out.writeHead(status, {
        "content-type": "text/plain; charset=utf-8",
        "content-length": Buffer.byteLength(body),
        ...headers,
      });
      out.end(body);
    };
    if (req.method !== "POST") {
      reply(405, `use POST ${routePrefix}<name>[?is_library=true]`, { allow: "POST" });
      return true;
    }
    if (!fromThisHost(req.socket)) {
      reply(403, `${routePrefix} serves the compute's own Postgres only; ${req.socket.remoteAddress ?? "this caller"} is not an address of this host`);
      return true;
    }
    let name: string;
    try {
      name = decodeURIComponent(url.pathname.slice(routePrefix.length));
    } catch {
      reply(400, `the name in ${url.pathname} is not valid percent-encoding`);
      return true;
    }
    const isLibrary = url.searchParams.get("is_library") === "true";
    const gone = new AbortController();
    out.on("close", () => {
      if (!out.writableEnded) gone.abort();
    });
    try {
      const result = await files.ensure(name, { isLibrary, signal: gone.signal });
      reply(200, `${isLibrary ? "library" : "extension"} "${name}" is present (extension "${result.extension}"${result.alreadyPresent ? "" : ", fetched now"})`);
    } catch (error) {
      if (gone.signal.aborted) return true; // the hook gave up waiting; the download goes on
      const err = ConnectError.from(error);
      if (err.code !== Code.PermissionDenied && err.code !== Code.InvalidArgument) logger.warn({ err, name, isLibrary }, "extension_server request failed");
      reply(codeToHttpStatus(err.code), err.rawMessage);
    }
    return true;
  };
}

/** Loopback, or a connection from this host to one of its own addresses (its source is the address it reached). */
function fromThisHost(socket: { readonly remoteAddress?: string | undefined; readonly localAddress?: string | undefined }): boolean {
  const address = socket.remoteAddress;
  if (address === undefined) return false;
  return address === "::1" || /^(::ffff:)?127\./.test(address) || address === socket.localAddress;
}
