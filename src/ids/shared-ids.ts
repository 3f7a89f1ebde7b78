import { Code, ConnectError } from "@connectrpc/connect";
import { quoteInput } from "../errors/index.js";

/*
 * The one rule for each identifier several services share. A tenant id the
 * ExtensionStore accepts is one Epufs, walredo, timelines and compute-ctl
 * accept too, and the other way round.
 */

/**
 * Tenant, timeline and endpoint ids: 1 to 64 of [A-Za-z0-9_-]. Neon's 32-hex
 * tenant and timeline ids and "ep-…" endpoint ids fit; each names a blob key
 * segment and a URL path segment as it is.
 */
export const resourceIdPattern = /^[A-Za-z0-9_-]{1,64}$/;

/** Why `value` is not a tenant, timeline or endpoint id, or undefined when it is one. */
export function resourceIdProblem(value: string): string | undefined {
  if (value === "") return "is missing";
  return resourceIdPattern.test(value) ? undefined : 'is not valid: use 1 to 64 letters, digits, "_" or "-"';
}

/** `value` when it is a valid id; else INVALID_ARGUMENT naming `field` (its wire name, e.g. "tenant_id"). */
export function checkResourceId(field: string, value: string): string {
  const problem = resourceIdProblem(value);
  if (problem) throw new ConnectError(value === "" ? `${field} ${problem}` : `${field} ${quoteInput(value)} ${problem}`, Code.InvalidArgument);
  return value;
}

const extensionNamePattern = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;
/** Postgres's NAMEDATALEN - 1. */
const maxExtensionNameLength = 63;

/**
 * Why `name` is not an extension (or library) name, or undefined: letters,
 * digits, "_", "." and "-", not starting with "." or "-", no "--" (Postgres's
 * script file separator) and no trailing "-", at most 63 characters. Library
 * names such as "libpgrouting-3.4" fit; so the name is safe in a file name,
 * a blob key and a URL path.
 */
export function extensionNameProblem(name: string): string | undefined {
  if (name.length === 0) return "it is empty";
  if (name.length > maxExtensionNameLength) return `it is longer than ${maxExtensionNameLength} characters`;
  if (!extensionNamePattern.test(name)) return 'use letters, digits, "_", "." and "-", starting with a letter, digit or "_"';
  if (name.includes("--") || name.endsWith("-")) return 'it may not contain "--" or end with "-"';
  return undefined;
}

/** `name` when it is an extension name; else INVALID_ARGUMENT naming `field`. */
export function checkExtensionName(name: string, field = "name"): string {
  const problem = extensionNameProblem(name);
  if (problem) throw new ConnectError(`${field} ${quoteInput(name)} is not a valid extension name: ${problem}`, Code.InvalidArgument);
  return name;
}

/** A Postgres major version: 10 to 99 (the two digits of Neon's `v<NN>` paths). */
export function checkPgMajor(major: number, field = "pg_major"): number {
  if (!Number.isInteger(major) || major < 10 || major > 99) {
    throw new ConnectError(`${field} ${major} is not a Postgres major version (10-99)`, Code.InvalidArgument);
  }
  return major;
}
