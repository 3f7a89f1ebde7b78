/*
 * Where the store keeps things in its blob store (the same on a local
 * directory and on S3; there is no other database):
 *
 *   extensions/<name>/sha256-<hex>/bundle.tar          the bundle, as published
 *   extensions/<name>/sha256-<hex>/control/<file>      its control files, for index reads
 *   extensions/<name>/sha256-<hex>/meta.json           its metadata; written last: the commit point
 *   extensions/<name>/sha256-<hex>/review.json         the review decision (absent: pending)
 *   bundles/sha256-<hex>.json                          {"name": …}: which extension holds these bytes
 *   grants/<name>/<tenant>.json                        a tenant's grant of a private extension
 */

export const extensionsPrefix = "extensions/";
export const grantsPrefix = "grants/";

export function versionPrefix(name: string, sha256: string): string {
  return `${extensionsPrefix}${name}/sha256-${sha256}/`;
}

export function bundleKey(name: string, sha256: string): string {
  return `${versionPrefix(name, sha256)}bundle.tar`;
}

export function controlFileKey(name: string, sha256: string, fileName: string): string {
  return `${versionPrefix(name, sha256)}control/${fileName}`;
}

export function metaKey(name: string, sha256: string): string {
  return `${versionPrefix(name, sha256)}meta.json`;
}

export function reviewKey(name: string, sha256: string): string {
  return `${versionPrefix(name, sha256)}review.json`;
}

export function bundleOwnerKey(sha256: string): string {
  return `bundles/sha256-${sha256}.json`;
}

export function grantKey(name: string, tenantId: string): string {
  return `${grantsPrefix}${name}/${tenantId}.json`;
}

/** The (name, sha256) of a meta.json key, or undefined for any other key. */
export function parseMetaKey(key: string): { name: string; sha256: string } | undefined {
  const match = /^extensions\/([^/]+)\/sha256-([0-9a-f]{64})\/meta\.json$/.exec(key);
  return match ? { name: match[1]!, sha256: match[2]! } : undefined;
}

/** The (name, tenant) of a grant key, or undefined for any other key. */
export function parseGrantKey(key: string): { name: string; tenantId: string } | undefined {
  const match = /^grants\/([^/]+)\/([^/]+)\.json$/.exec(key);
  return match ? { name: match[1]!, tenantId: match[2]! } : undefined;
}
