import { BlobInvalidKeyError } from "./blob-errors.js";

/** S3's own limit on a key, in UTF-8 bytes. */
export const maxBlobKeyBytes = 1024;

/**
 * Checks an object key: "/"-separated segments, none empty, none "." or "..",
 * no leading "/", no NUL, at most 1024 UTF-8 bytes. Throws BlobInvalidKeyError.
 */
export function validateBlobKey(key: string): string {
  if (key === "") throw new BlobInvalidKeyError(key, "it is empty");
  checkCommon(key);
  for (const segment of key.split("/")) checkSegment(key, segment);
  return key;
}

/**
 * Checks a listing or delete prefix: "" (everything) or the start of a key.
 * Complete segments follow the key rules; the last, partial segment may be
 * empty (a prefix ending in "/") or the start of a segment name.
 */
export function validateBlobPrefix(prefix: string): string {
  if (prefix === "") return prefix;
  checkCommon(prefix);
  const segments = prefix.split("/");
  for (const segment of segments.slice(0, -1)) checkSegment(prefix, segment);
  return prefix;
}

function checkCommon(key: string): void {
  if (key.startsWith("/")) throw new BlobInvalidKeyError(key, 'it starts with "/"; keys are relative');
  if (key.includes("\0")) throw new BlobInvalidKeyError(key, "it contains a NUL byte");
  if (Buffer.byteLength(key) > maxBlobKeyBytes) {
    throw new BlobInvalidKeyError(key, `it is longer than ${maxBlobKeyBytes} bytes`);
  }
}

function checkSegment(key: string, segment: string): void {
  if (segment === "") throw new BlobInvalidKeyError(key, 'it has an empty segment ("//" or a trailing "/")');
  if (segment === "." || segment === "..") {
    throw new BlobInvalidKeyError(key, `it has a "${segment}" segment`);
  }
}

/** Byte-wise (UTF-8) order, the order S3 lists keys in. */
export function compareBlobKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}
