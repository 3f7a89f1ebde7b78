import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import { codeToHttpStatus } from "@connectrpc/connect/protocol-connect";
import type { ExtensionStore } from "./extension-store.js";
import { drainOrClose } from "../server/index.js";
import { zstdCompress } from "./zstd-compress.js";

type Request = IncomingMessage | Http2ServerRequest;
type Response = ServerResponse | Http2ServerResponse;

/** Neon's names for this machine's architecture (Go's, as in its gateway paths). */
const thisArch = process.arch === "x64" ? "amd64" : process.arch;

/** BUILD_TAG/ARCH/vNN/extensions/NAME.tar.zst */
const neonPath = /^\/([A-Za-z0-9._-]{1,128})\/([a-z0-9_]{1,16})\/v(\d{2})\/extensions\/([^/]{1,80})\.tar\.zst$/;

/**
 * Neon's remote extension layout, read-only, so a Neon compute_ctl can use
 * this store as its `-r` gateway: `GET /<build_tag>/<arch>/v<NN>/extensions/<name>.tar.zst`
 * answers the newest approved public bundle of <name> for Postgres NN as a
 * zstd-compressed tar (lib/ and share/extension/, the layout Neon's archives
 * have), streamed. Any build tag is accepted (bundles are not per build here);
 * another architecture than this machine's is 404. Private bundles are never
 * served here: they stay behind DownloadBundle's tokens. Returns false for
 * other paths.
 */
export function createNeonExtensionRoute(store: ExtensionStore) {
  return async (req: Request, res: Response): Promise<boolean> => {
    const match = neonPath.exec((req.url ?? "/").split("?")[0]!);
    if (!match || (req.method !== "GET" && req.method !== "HEAD")) return false;
    const [, , arch, major, name] = match;
    const abort = new AbortController();
    res.once("close", () => abort.abort(new ConnectError("the client closed the request", Code.Canceled)));
    let bundle;
    try {
      if (arch !== thisArch) throw new ConnectError(`this store serves ${thisArch} bundles, not ${arch}`, Code.NotFound);
      bundle = await store.openPublicBundle(name!, Number(major), abort.signal);
    } catch (error) {
      const err = ConnectError.from(error);
      res.writeHead(codeToHttpStatus(err.code), { "content-type": "text/plain; charset=utf-8" });
      res.end(`${err.rawMessage}\n`);
      return true;
    }
    res.writeHead(200, { "content-type": "application/zstd", "x-bundle-sha256": bundle.sha256 });
    if (req.method === "HEAD") {
      abort.abort();
      res.end();
      return true;
    }
    try {
      for await (const chunk of zstdCompress(bundle.body, abort.signal)) {
        if (!(res as ServerResponse).write(chunk)) await drainOrClose(res);
        if (abort.signal.aborted) return true;
      }
      res.end();
    } catch (error) {
      // Mid-body: cutting the response short is the only honest signal left.
      res.destroy(error instanceof Error ? error : undefined);
    }
    return true;
  };
}
