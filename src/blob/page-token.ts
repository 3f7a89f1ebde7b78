import { BlobInvalidPageTokenError } from "./blob-errors.js";

interface PageTokenBody {
  /** The listing's prefix: a token is only valid for the listing that issued it. */
  readonly p: string;
  /** The last key of the previous page. */
  readonly a: string;
}

/** An opaque token meaning "the keys under `prefix` after `afterKey`". */
export function encodePageToken(prefix: string, afterKey: string): string {
  const body: PageTokenBody = { p: prefix, a: afterKey };
  return Buffer.from(JSON.stringify(body)).toString("base64url");
}

/** The key to list after, or undefined for the first page. */
export function decodePageToken(prefix: string, token: string | undefined): string | undefined {
  if (token === undefined || token === "") return undefined;
  let body: unknown;
  try {
    body = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
  } catch {
    throw new BlobInvalidPageTokenError(token);
  }
  if (!isPageTokenBody(body) || body.p !== prefix || !body.a.startsWith(prefix)) {
    throw new BlobInvalidPageTokenError(token);
  }
  return body.a;
}

function isPageTokenBody(value: unknown): value is PageTokenBody {
  if (typeof value !== "object" || value === null) return false;
  const record = value as Record<string, unknown>;
  return typeof record.p === "string" && typeof record.a === "string";
}

/** Default and maximum page sizes shared by both backends (S3 caps at 1000). */
export const defaultBlobPageSize = 1000;
export const maxBlobPageSize = 1000;

export function effectivePageSize(requested: number | undefined): number {
  if (requested === undefined || requested <= 0) return defaultBlobPageSize;
  return Math.min(Math.floor(requested), maxBlobPageSize);
}
