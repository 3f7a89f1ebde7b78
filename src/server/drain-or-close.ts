import type { ServerResponse } from "node:http";
import type { Http2ServerResponse } from "node:http2";

/** Resolves when a plain HTTP response that refused a write drains, or closes (the client left). */
export function drainOrClose(res: ServerResponse | Http2ServerResponse): Promise<void> {
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
