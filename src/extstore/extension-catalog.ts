import { createReadStream } from "node:fs";
import { BlobNotFoundError, bytesBody, claimKey, type BlobStore } from "../blob/index.js";
import {
  bundleKey,
  bundleOwnerKey,
  controlFileKey,
  extensionsPrefix,
  grantKey,
  grantsPrefix,
  metaKey,
  parseGrantKey,
  parseMetaKey,
  reviewKey,
} from "./bundle-keys.js";
import type { BundleControlFile } from "./inspect-bundle.js";
import type { CatalogEntry, StoredBundleOwner, StoredGrant, StoredReview, StoredVersion } from "./stored-records.js";

/** What commitVersion() did: stored the version, found it stored, or found the bytes owned by another extension. */
export type CommitOutcome =
  | { readonly outcome: "created" | "existed"; readonly version: StoredVersion }
  | { readonly outcome: "owned"; readonly owner: string };

/**
 * The store's records, kept as objects in the blob store (see bundle-keys.ts).
 * meta.json is immutable, so it is cached in memory; reviews and grants are
 * read afresh on every call so several stores may share one bucket.
 * Records that replicas may race to write (owner, meta.json, review, grant)
 * are created once with claimKey(): the first writer wins, and the others get
 * the winner's record back, so every replica answers from one state.
 */
export class ExtensionCatalog {
  private readonly metaCache = new Map<string, StoredVersion>();

  constructor(private readonly blobs: BlobStore) {}

  /** The published bundle (name, sha256) with its review, or undefined. */
  async getEntry(name: string, sha256: string): Promise<CatalogEntry | undefined> {
    const version = await this.getVersion(name, sha256);
    if (version === undefined) return undefined;
    return { version, review: await this.getReview(name, sha256) };
  }

  /** The published bundle with these bytes, whatever its name, or undefined. */
  async findBySha256(sha256: string): Promise<CatalogEntry | undefined> {
    const owner = await this.readJson<StoredBundleOwner>(bundleOwnerKey(sha256));
    return owner === undefined ? undefined : this.getEntry(owner.name, sha256);
  }

  /** The name these bytes are (being) published under, or undefined. */
  async ownerOf(sha256: string): Promise<string | undefined> {
    return (await this.readJson<StoredBundleOwner>(bundleOwnerKey(sha256)))?.name;
  }

  /** Every published bundle (of one extension when `name` is given), unordered. */
  async listEntries(name?: string): Promise<CatalogEntry[]> {
    const prefix = name === undefined ? extensionsPrefix : `${extensionsPrefix}${name}/`;
    const entries: CatalogEntry[] = [];
    for await (const info of this.blobs.listAll(prefix)) {
      const ids = parseMetaKey(info.key);
      if (ids === undefined) continue;
      const entry = await this.getEntry(ids.name, ids.sha256);
      if (entry !== undefined) entries.push(entry);
    }
    return entries;
  }

  /** Whether any bundle of the extension is published. */
  async extensionExists(name: string): Promise<boolean> {
    for await (const info of this.blobs.listAll(`${extensionsPrefix}${name}/`)) {
      if (parseMetaKey(info.key) !== undefined) return true;
    }
    return false;
  }

  /**
   * Stores a validated bundle: claims its bytes for the extension (owner
   * record), stores its bytes and control files, then claims its meta.json,
   * which makes it visible. A concurrent publish of the same bytes (on any
   * replica) ends with one meta.json, which both report. On failure, removes
   * what it wrote (best effort) and rethrows.
   */
  async commitVersion(
    version: StoredVersion,
    bundlePath: string,
    controlFiles: readonly BundleControlFile[],
    signal?: AbortSignal,
  ): Promise<CommitOutcome> {
    const { name, sha256 } = version;
    const ownerClaim = await claimKey(this.blobs, bundleOwnerKey(sha256), jsonBytes({ name } satisfies StoredBundleOwner));
    if (!ownerClaim.won) {
      const owner = parseJson<StoredBundleOwner>(bundleOwnerKey(sha256), ownerClaim.holder).name;
      if (owner !== name) return { outcome: "owned", owner };
    }
    const written: string[] = ownerClaim.won ? [bundleOwnerKey(sha256)] : [];
    const put = async (key: string, body: AsyncIterable<Uint8Array>, expectedBytes: number) => {
      await this.blobs.put(key, body, { expectedBytes, ...(signal ? { signal } : {}) });
      written.push(key);
    };
    let outcome: CommitOutcome;
    try {
      await put(bundleKey(name, sha256), createReadStream(bundlePath), version.size);
      for (const file of controlFiles) {
        const bytes = Buffer.from(file.content, "utf8");
        await put(controlFileKey(name, sha256, file.fileName), bytesBody(bytes), bytes.byteLength);
      }
      const metaClaim = await claimKey(this.blobs, metaKey(name, sha256), jsonBytes(version));
      outcome = metaClaim.won
        ? { outcome: "created", version }
        : { outcome: "existed", version: parseJson<StoredVersion>(metaKey(name, sha256), metaClaim.holder) };
    } catch (error) {
      // A concurrent publish of the same bytes may have committed meanwhile: keep its objects.
      const committed = await this.blobs.head(metaKey(name, sha256)).catch(() => undefined);
      if (committed === undefined) {
        for (const key of written.reverse()) await this.blobs.delete(key).catch(() => undefined);
      }
      throw error;
    }
    this.metaCache.set(metaKey(name, sha256), outcome.version);
    return outcome;
  }

  /** Records a review decision unless one exists; returns the decision that stands. */
  async claimReview(name: string, sha256: string, review: StoredReview): Promise<StoredReview> {
    return this.claimJson(reviewKey(name, sha256), review);
  }

  /** The control files of a bundle, read from their separate objects. */
  async readControlFiles(version: StoredVersion): Promise<BundleControlFile[]> {
    const files: BundleControlFile[] = [];
    for (const fileName of version.control_files) {
      const content = await this.readText(controlFileKey(version.name, version.sha256, fileName));
      if (content === undefined) {
        throw new Error(`control file ${fileName} of ${version.name} sha256-${version.sha256} is missing from the blob store`);
      }
      files.push({ fileName, content });
    }
    return files;
  }

  /** Opens a bundle's bytes. Throws BlobNotFoundError when they are gone. */
  openBundle(version: StoredVersion, signal?: AbortSignal) {
    return this.blobs.get(bundleKey(version.name, version.sha256), signal ? { signal } : {});
  }

  async getGrant(name: string, tenantId: string): Promise<StoredGrant | undefined> {
    return this.readJson<StoredGrant>(grantKey(name, tenantId));
  }

  /** Records a grant unless one exists; returns the grant that stands. */
  async claimGrant(grant: StoredGrant): Promise<StoredGrant> {
    return this.claimJson(grantKey(grant.name, grant.tenant_id), grant);
  }

  async deleteGrant(name: string, tenantId: string): Promise<boolean> {
    return this.blobs.delete(grantKey(name, tenantId));
  }

  /** Grants, filtered by extension and/or tenant, ordered by name then tenant. */
  async listGrants(filter: { name?: string; tenantId?: string }): Promise<StoredGrant[]> {
    const prefix = filter.name === undefined ? grantsPrefix : `${grantsPrefix}${filter.name}/`;
    const grants: StoredGrant[] = [];
    for await (const info of this.blobs.listAll(prefix)) {
      const ids = parseGrantKey(info.key);
      if (ids === undefined) continue;
      if (filter.name !== undefined && ids.name !== filter.name) continue;
      if (filter.tenantId !== undefined && ids.tenantId !== filter.tenantId) continue;
      const grant = await this.readJson<StoredGrant>(info.key);
      if (grant !== undefined) grants.push(grant);
    }
    return grants;
  }

  private async getVersion(name: string, sha256: string): Promise<StoredVersion | undefined> {
    const key = metaKey(name, sha256);
    const cached = this.metaCache.get(key);
    if (cached !== undefined) return cached;
    const version = await this.readJson<StoredVersion>(key);
    if (version !== undefined) this.metaCache.set(key, version);
    return version;
  }

  private async getReview(name: string, sha256: string): Promise<StoredReview | undefined> {
    return this.readJson<StoredReview>(reviewKey(name, sha256));
  }

  private async readJson<T>(key: string): Promise<T | undefined> {
    const text = await this.readText(key);
    return text === undefined ? undefined : parseJson<T>(key, Buffer.from(text, "utf8"));
  }

  /** Creates the record unless it exists (on any replica); returns the record that stands. */
  private async claimJson<T>(key: string, value: T): Promise<T> {
    const claim = await claimKey(this.blobs, key, jsonBytes(value));
    return claim.won ? value : parseJson<T>(key, claim.holder);
  }

  private async readText(key: string): Promise<string | undefined> {
    let object;
    try {
      object = await this.blobs.get(key);
    } catch (error) {
      if (error instanceof BlobNotFoundError) return undefined;
      throw error;
    }
    const parts: Buffer[] = [];
    for await (const chunk of object.body) parts.push(Buffer.from(chunk));
    return Buffer.concat(parts).toString("utf8");
  }
}

/** How records are stored: indented JSON and a newline. */
function jsonBytes(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value, null, 2) + "\n", "utf8");
}

function parseJson<T>(key: string, bytes: Uint8Array): T {
  try {
    return JSON.parse(Buffer.from(bytes).toString("utf8")) as T;
  } catch (error) {
    throw new Error(`catalog object ${key} is not valid JSON: ${(error as Error).message}`);
  }
}
