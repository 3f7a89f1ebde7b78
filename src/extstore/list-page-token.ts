import { Code, ConnectError } from "@connectrpc/connect";
import type { CatalogEntry } from "./stored-records.js";
import { quoteInput } from "../errors/index.js";

/** Where a ListExtensions page ended: the last entry's sort key. */
interface ListPosition {
  readonly n: string;
  readonly t: string;
  readonly s: string;
}

/** Catalog order: name, then publish time, then sha256. */
export function compareListOrder(a: CatalogEntry | ListPosition, b: CatalogEntry | ListPosition): number {
  const ka = keyOf(a);
  const kb = keyOf(b);
  return ka.n.localeCompare(kb.n) || ka.t.localeCompare(kb.t) || ka.s.localeCompare(kb.s);
}

function keyOf(x: CatalogEntry | ListPosition): ListPosition {
  return "version" in x ? { n: x.version.name, t: x.version.publish_time, s: x.version.sha256 } : x;
}

export function encodeListPageToken(last: CatalogEntry): string {
  return Buffer.from(JSON.stringify(keyOf(last))).toString("base64url");
}

/** The position to continue after, or undefined for the first page. */
export function decodeListPageToken(token: string): ListPosition | undefined {
  if (token === "") return undefined;
  try {
    const value = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as Record<string, unknown>;
    if (typeof value.n === "string" && typeof value.t === "string" && typeof value.s === "string") {
      return { n: value.n, t: value.t, s: value.s };
    }
  } catch {
    // fall through
  }
  throw new ConnectError(
    `page_token ${quoteInput(token)} is not one this store issued; pass next_page_token unchanged, or none to start over`,
    Code.InvalidArgument,
  );
}
