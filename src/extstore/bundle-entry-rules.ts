import { BundleRejectedError } from "./extension-store-errors.js";

/**
 * Folders under share/ an extension may ship besides share/extension/:
 * contrib/ (PostGIS-style script folders) and tsearch_data/ (dictionaries).
 * Everything else under share/ belongs to Postgres itself (postgres.bki,
 * timezonesets, …) and a bundle must not overwrite it.
 */
export const extraShareFolders: readonly string[] = ["contrib", "tsearch_data"];

/** What an accepted entry is. */
export type BundleEntryKind =
  | { readonly kind: "directory"; readonly path: string }
  | { readonly kind: "control"; readonly path: string; readonly fileName: string }
  | { readonly kind: "library"; readonly path: string; readonly library: string }
  | { readonly kind: "file"; readonly path: string };

/**
 * Normalises a tar entry name ("./lib/x.so", "lib/" …) to a relative path
 * without a trailing "/", refusing absolute paths, "." and ".." segments,
 * empty segments, backslashes and control characters.
 */
export function normaliseEntryPath(name: string): string {
  const fault = (reason: string) => new BundleRejectedError("invalid", name, reason);
  if (name.startsWith("/")) throw fault("absolute paths are not allowed; entries are relative to the bundle root");
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f\\]/.test(name)) throw fault("the name holds a control character or a backslash");
  let path = name.startsWith("./") ? name.slice(2) : name;
  if (path.endsWith("/")) path = path.slice(0, -1);
  if (path === "" || path === ".") return "";
  for (const segment of path.split("/")) {
    if (segment === "..") throw fault('".." segments are not allowed; entries must stay inside the bundle');
    if (segment === "." || segment === "") throw fault('empty or "." segments are not allowed');
  }
  return path;
}

/**
 * Where a regular file or directory may sit: lib/** (libraries are the
 * lib/*.so files), share/extension/* (no deeper), share/contrib/**,
 * share/tsearch_data/**. Throws BundleRejectedError for anything else.
 */
export function classifyBundleEntry(name: string, isDirectory: boolean): BundleEntryKind {
  const path = normaliseEntryPath(name);
  const segments = path === "" ? [] : path.split("/");
  const [top, second] = segments;
  const outside = () =>
    new BundleRejectedError(
      "invalid",
      name,
      `it is outside the bundle layout; put libraries under lib/ and extension files under share/extension/ (or share/${extraShareFolders.join("/, share/")}/)`,
    );
  if (isDirectory) {
    if (segments.length === 0 || top === "lib") return { kind: "directory", path };
    if (top !== "share") throw outside();
    if (segments.length === 1) return { kind: "directory", path };
    if (second === "extension" && segments.length === 2) return { kind: "directory", path };
    if (extraShareFolders.includes(second!)) return { kind: "directory", path };
    throw outside();
  }
  if (top === "lib" && segments.length >= 2) {
    const base = segments[1]!;
    if (segments.length === 2 && base.endsWith(".so") && base.length > 3) {
      return { kind: "library", path, library: base.slice(0, -3) };
    }
    return { kind: "file", path };
  }
  if (top === "share" && second === "extension" && segments.length === 3) {
    const fileName = segments[2]!;
    return fileName.endsWith(".control") ? { kind: "control", path, fileName } : { kind: "file", path };
  }
  if (top === "share" && segments.length >= 3 && extraShareFolders.includes(second!)) return { kind: "file", path };
  throw outside();
}
