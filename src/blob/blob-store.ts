/** What a blob store knows about one stored object. */
export interface BlobInfo {
  /** The object's key, relative to the store's root or prefix. */
  readonly key: string;
  readonly size: number;
  /** Opaque version of the content: changes whenever the object is replaced. */
  readonly etag: string;
  readonly modified: Date;
}

export interface PutOptions {
  /** Aborting the signal cancels the put; the previous object (if any) stays. */
  readonly signal?: AbortSignal;
  /** When set, the put fails (and stores nothing) unless exactly this many bytes arrive. */
  readonly expectedBytes?: number;
  /** When set, the put fails (and stores nothing) once more bytes than this arrive. */
  readonly maxBytes?: number;
  /**
   * "*": store only if the key does not exist yet; otherwise throw
   * BlobPreconditionFailedError and store nothing.
   */
  readonly ifNoneMatch?: "*";
  /**
   * Store only if the current object's etag equals this one (a read-modify-write
   * that loses to a concurrent writer fails instead of overwriting it); otherwise
   * throw BlobPreconditionFailedError and store nothing.
   */
  readonly ifMatch?: string;
}

export interface GetOptions {
  readonly signal?: AbortSignal;
}

export interface ListOptions {
  readonly pageSize?: number;
  /** Opaque token from a previous page's nextPageToken. */
  readonly pageToken?: string;
}

export interface BlobPage {
  /** Objects of this page, in key order. */
  readonly items: BlobInfo[];
  /** Absent on the last page. */
  readonly nextPageToken?: string;
}

export interface DeletedCounts {
  readonly objects: number;
  readonly bytes: number;
}

export interface BlobObject {
  readonly info: BlobInfo;
  readonly body: AsyncIterable<Uint8Array>;
}

/**
 * One interface over S3 and a local directory. Puts are atomic: readers see the
 * old object or the new one, never a torn one, and a failed or cancelled put
 * leaves no trace. Both backends pass the same contract tests.
 */
export interface BlobStore {
  /**
   * Whether the backend enforces ifNoneMatch and ifMatch. When false, a put with
   * either condition throws BlobConditionalWritesUnsupportedError: use claimKey()
   * instead, which falls back to a listing-based claim.
   */
  readonly conditionalWrites: boolean;
  put(key: string, body: AsyncIterable<Uint8Array>, options?: PutOptions): Promise<BlobInfo>;
  /** Throws BlobNotFoundError when the key does not exist. */
  get(key: string, options?: GetOptions): Promise<BlobObject>;
  /** undefined when the key does not exist. */
  head(key: string): Promise<BlobInfo | undefined>;
  list(prefix: string, options?: ListOptions): Promise<BlobPage>;
  /** Every object under the prefix, in key order, page by page. */
  listAll(prefix: string): AsyncIterable<BlobInfo>;
  /** true when an object was removed. */
  delete(key: string): Promise<boolean>;
  deletePrefix(prefix: string): Promise<DeletedCounts>;
  /** Releases clients and handles. */
  close(): Promise<void>;
}
