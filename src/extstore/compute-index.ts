import type { ExtensionCatalog } from "./extension-catalog.js";
import type { BundleControlFile } from "./inspect-bundle.js";
import { isApproved, type CatalogEntry } from "./stored-records.js";
import { bundleKey } from "./bundle-keys.js";

/** One extension a compute may use: the bundle to fetch and its control files. */
export interface ComputeIndexItem {
  readonly entry: CatalogEntry;
  readonly controlFiles: readonly BundleControlFile[];
}

export interface ComputeIndex {
  /** By extension name. */
  readonly items: readonly ComputeIndexItem[];
  /** Library name (lib/<name>.so) to the extension providing it. */
  readonly libraryIndex: ReadonlyMap<string, string>;
}

/** Whether a tenant may use a bundle: public, or private and granted. */
export function usableBy(entry: CatalogEntry, grantedNames: ReadonlySet<string>): boolean {
  return entry.version.visibility === "public" || grantedNames.has(entry.version.name);
}

/** Newest first: by publish time, then sha256 for a stable order. */
function newerFirst(a: CatalogEntry, b: CatalogEntry): number {
  const byTime = b.version.publish_time.localeCompare(a.version.publish_time);
  return byTime !== 0 ? byTime : a.version.sha256.localeCompare(b.version.sha256);
}

/**
 * For each extension, the newest approved bundle built for `pgMajor` that the
 * tenant may use; control files read from their own objects. A library two
 * extensions provide maps to the first by name.
 */
export async function buildComputeIndex(
  catalog: ExtensionCatalog,
  tenantId: string,
  pgMajor: number,
): Promise<ComputeIndex> {
  const granted = new Set((await catalog.listGrants({ tenantId })).map((g) => g.name));
  const newest = new Map<string, CatalogEntry>();
  const candidates = (await catalog.listEntries())
    .filter((e) => isApproved(e) && e.version.pg_majors.includes(pgMajor) && usableBy(e, granted))
    .sort(newerFirst);
  for (const entry of candidates) {
    if (!newest.has(entry.version.name)) newest.set(entry.version.name, entry);
  }
  const items: ComputeIndexItem[] = [];
  const libraryIndex = new Map<string, string>();
  for (const name of [...newest.keys()].sort()) {
    const entry = newest.get(name)!;
    items.push({ entry, controlFiles: await catalog.readControlFiles(entry.version) });
    for (const library of entry.version.libraries) {
      if (!libraryIndex.has(library)) libraryIndex.set(library, name);
    }
  }
  return { items, libraryIndex };
}

/**
 * The index as JSON in Neon's RemoteExtSpec shape (libs/compute_api spec.rs):
 * public_extensions, custom_extensions, library_index and extension_data
 * {control_data, archive_path}, plus pgmesh's sha256 and preload flags.
 */
export function remoteExtensionsJson(index: ComputeIndex): string {
  const publicExtensions: string[] = [];
  const customExtensions: string[] = [];
  const extensionData: Record<string, unknown> = {};
  for (const { entry, controlFiles } of index.items) {
    const v = entry.version;
    (v.visibility === "public" ? publicExtensions : customExtensions).push(v.name);
    extensionData[v.name] = {
      control_data: Object.fromEntries(controlFiles.map((c) => [c.fileName, c.content])),
      archive_path: bundleKey(v.name, v.sha256),
      sha256: v.sha256,
      needs_shared_preload: v.needs_shared_preload,
      needs_session_preload: v.needs_session_preload,
    };
  }
  return JSON.stringify({
    public_extensions: publicExtensions,
    custom_extensions: customExtensions,
    library_index: Object.fromEntries(index.libraryIndex),
    extension_data: extensionData,
  });
}
