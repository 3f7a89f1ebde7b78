import { posix } from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import { quoteInput } from "../errors/index.js";

/** Longest path accepted, in UTF-8 bytes; keeps the whole object key under S3's 1024. */
export const maxPgdataPathBytes = 512;
/** Longest path segment (NAME_MAX). */
const maxSegmentBytes = 255;

/**
 * Why `path` is not a normalised path inside PGDATA, or undefined when it is.
 * A normalised path is relative, "/"-separated, with no empty, "." or ".."
 * segment, no trailing "/", no backslash, NUL or control character.
 */
export function pgdataPathProblem(path: string): string | undefined {
  if (path === "") return "is empty";
  if (path.includes("\0")) return "contains a NUL byte";
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(path)) return "contains a control character";
  if (path.includes("\\")) return 'contains a backslash; separate directories with "/"';
  if (Buffer.byteLength(path) > maxPgdataPathBytes) return `is longer than ${maxPgdataPathBytes} bytes`;
  if (path.startsWith("/")) return "is absolute; give it relative to PGDATA";
  const segments = path.split("/");
  if (segments.includes("..")) {
    const resolved = posix.normalize(path);
    return resolved === ".." || resolved.startsWith("../")
      ? "escapes PGDATA"
      : `is not normalised (has a ".." segment); use ${quoteInput(resolved)}`;
  }
  if (segments.some((segment) => segment === "" || segment === ".")) {
    const normalised = posix.normalize(path).replace(/\/+$/, "");
    return normalised === "" || normalised === "."
      ? "names PGDATA itself, not a file in it"
      : `is not normalised (empty or "." segments, or a trailing "/"); use ${quoteInput(normalised)}`;
  }
  if (segments.some((segment) => Buffer.byteLength(segment) > maxSegmentBytes)) {
    return `has a segment longer than ${maxSegmentBytes} bytes`;
  }
  return undefined;
}

/** INVALID_ARGUMENT unless `path` is a normalised path inside PGDATA. */
export function validatePgdataPath(path: string): string {
  const problem = pgdataPathProblem(path);
  if (problem) throw new ConnectError(`path ${quoteInput(path)} ${problem}`, Code.InvalidArgument);
  return path;
}

/** An allow-list entry follows the same rules, with "*" allowed inside segments. */
export function checkPgdataPathPattern(pattern: string): string | undefined {
  return pgdataPathProblem(pattern.replace(/\*/g, "x"));
}
