/** meta.json of one published bundle; immutable once written. */
export interface StoredVersion {
  readonly format: 1;
  readonly name: string;
  readonly version: string;
  readonly sha256: string;
  readonly pg_majors: readonly number[];
  readonly license: string;
  readonly visibility: "public" | "private";
  readonly needs_shared_preload: boolean;
  readonly needs_session_preload: boolean;
  readonly libraries: readonly string[];
  readonly control_files: readonly string[];
  readonly size: number;
  /** ISO 8601. */
  readonly publish_time: string;
  readonly description: string;
}

/** review.json of a reviewed bundle; a bundle without one is pending. */
export interface StoredReview {
  readonly state: "approved" | "rejected";
  readonly reason: string;
  /** ISO 8601. */
  readonly review_time: string;
}

/** A grant's object. */
export interface StoredGrant {
  readonly name: string;
  readonly tenant_id: string;
  /** ISO 8601. */
  readonly grant_time: string;
}

/** bundles/sha256-<hex>.json: which extension these bytes were published as. */
export interface StoredBundleOwner {
  readonly name: string;
}

/** A published bundle with its review. */
export interface CatalogEntry {
  readonly version: StoredVersion;
  readonly review: StoredReview | undefined;
}

export function isApproved(entry: CatalogEntry): boolean {
  return entry.review?.state === "approved";
}
