import { extensionNameProblem } from "../../ids/index.js";
import { InvalidExtensionNameError, type ExtensionKind } from "./extension-errors.js";

/**
 * Checks an extension or library name (the rule every service shares) before
 * it is used in a file name. Throws InvalidExtensionNameError.
 */
export function checkExtensionName(name: string, kind: ExtensionKind = "extension"): string {
  const problem = extensionNameProblem(name);
  if (problem) throw new InvalidExtensionNameError(name, kind, problem);
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
