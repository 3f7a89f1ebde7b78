import { InvalidExtensionNameError, type ExtensionKind } from "./extension-errors.js";

const namePattern = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;
/** Postgres's NAMEDATALEN - 1. */
const maxNameLength = 63;

/**
 * Checks an extension or library name before it is used in a file name:
 * letters, digits, "_", "." and "-", not starting with "." or "-", no "--"
 * (Postgres's script file separator), at most 63 characters.
 * Throws InvalidExtensionNameError.
 */
export function checkExtensionName(name: string, kind: ExtensionKind = "extension"): string {
  const fail = (reason: string) => new InvalidExtensionNameError(name, kind, reason);
  if (name.length === 0) throw fail("it is empty");
  if (name.length > maxNameLength) throw fail(`it is longer than ${maxNameLength} characters`);
  if (!namePattern.test(name)) throw fail('use letters, digits, "_", "." and "-", starting with a letter, digit or "_"');
  if (name.includes("--") || name.endsWith("-")) throw fail('it may not contain "--" or end with "-"');
  return name;
}

/**
 * The bare library name of a LOAD argument or a preload list entry:
 * "$libdir/hypopg.so", "hypopg.so" and "hypopg" all give "hypopg".
 */
export function libraryNameOf(raw: string): string {
  let name = raw.trim();
  if (name.startsWith("$libdir/")) name = name.slice("$libdir/".length);
  if (name.endsWith(".so")) name = name.slice(0, -".so".length);
  return checkExtensionName(name, "library");
}

/** Splits a shared_preload_libraries-style value ("a, 'b', $libdir/c") into bare library names. */
export function parseLibraryList(value: string): string[] {
  return value
    .split(",")
    .map((item) => item.trim().replace(/^'(.*)'$/, "$1").replace(/^"(.*)"$/, "$1"))
    .filter((item) => item !== "")
    .map(libraryNameOf);
}
