import { quoteInput } from "../errors/index.js";

/** Base class of every error a blob store throws on purpose. */
export class BlobError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The key (or prefix) is not a valid object key. */
export class BlobInvalidKeyError extends BlobError {
  constructor(
    readonly key: string,
    readonly reason: string,
  ) {
    super(`invalid blob key ${quoteInput(key)}: ${reason}`);
  }
}

/** get() of a key that does not exist. */
export class BlobNotFoundError extends BlobError {
  constructor(readonly key: string) {
    super(`blob ${quoteInput(key)} does not exist`);
  }
}

/** A put delivered more bytes than its maxBytes; nothing was stored. */
export class BlobTooLargeError extends BlobError {
  constructor(
    readonly key: string,
    readonly maxBytes: number,
    /** The declared size when the put announced one, else undefined (reading stopped at the limit). */
    readonly declaredBytes?: number,
  ) {
    super(
      declaredBytes === undefined
        ? `blob ${quoteInput(key)} is larger than ${maxBytes} bytes, the limit; nothing was stored`
        : `blob ${quoteInput(key)} is declared as ${declaredBytes} bytes, over the limit of ${maxBytes} bytes; nothing was stored`,
    );
  }
}

/** A put with expectedBytes delivered another number of bytes; nothing was stored. */
export class BlobSizeMismatchError extends BlobError {
  constructor(
    readonly key: string,
    readonly expectedBytes: number,
    readonly actualBytes: number,
  ) {
    super(
      `blob ${quoteInput(key)} was announced as ${expectedBytes} bytes but ${actualBytes} arrived; nothing was stored`,
    );
  }
}

/** The put's signal was aborted before the object was stored; nothing changed. */
export class BlobPutCancelledError extends BlobError {
  constructor(
    readonly key: string,
    cause?: unknown,
  ) {
    super(`put of blob ${quoteInput(key)} was cancelled; nothing was stored`, { cause });
  }
}

/** A page token that this store did not issue for this prefix. */
export class BlobInvalidPageTokenError extends BlobError {
  constructor(readonly pageToken: string) {
    super(
      `page token ${quoteInput(pageToken)} is not valid for this listing; pass the next_page_token of the previous page unchanged, or none to start over`,
    );
  }
}

/**
 * The local backend cannot hold both "a/b" and "a/b/c": the first is a file,
 * the second needs "a/b" to be a directory.
 */
export class BlobKeyConflictError extends BlobError {
  constructor(
    readonly key: string,
    readonly reason: string,
  ) {
    super(`blob ${quoteInput(key)} cannot be stored: ${reason}`);
  }
}

/** The bytes read back do not match the object's length or checksum. */
export class BlobIntegrityError extends BlobError {
  constructor(
    readonly key: string,
    readonly reason: string,
    options?: ErrorOptions,
  ) {
    super(`blob ${quoteInput(key)} was read back corrupt (${reason}); retry the read`, options);
  }
}

/** The storage URL given to openBlobStore() is not usable. */
export class BlobStoreUrlError extends BlobError {
  constructor(
    readonly url: string,
    readonly reason: string,
  ) {
    super(
      `storage URL ${quoteInput(url)} is not usable: ${reason}; use file:///absolute/dir or s3://bucket/prefix`,
    );
  }
}

/** A conditional put (ifNoneMatch or ifMatch) found the object in another state; nothing was stored. */
export class BlobPreconditionFailedError extends BlobError {
  constructor(
    readonly key: string,
    /** What the put required, e.g. 'it does not exist yet (ifNoneMatch "*")'. */
    readonly condition: string,
  ) {
    super(
      `blob ${JSON.stringify(key)} was not written: the put required that ${condition}, and another writer got there first; nothing was stored, read the object again and retry`,
    );
  }
}

/** A put asked for a condition on a store that cannot enforce conditions. */
export class BlobConditionalWritesUnsupportedError extends BlobError {
  constructor(
    readonly key: string,
    readonly reason: string,
  ) {
    super(
      `put of blob ${JSON.stringify(key)} asked for a condition (ifNoneMatch or ifMatch) but ${reason}; nothing was stored. Use claimKey(), which works without conditions, or enable them with --s3-conditional-writes on if the server really enforces them`,
    );
  }
}

/** claimKey() kept meeting other claimers of the key until its settle time ran out; nothing was claimed. */
export class BlobClaimUnsettledError extends BlobError {
  constructor(
    readonly key: string,
    readonly attempts: number,
  ) {
    super(
      `claim of blob ${JSON.stringify(key)} did not settle after ${attempts} attempts: other claimers kept contending (or one crashed mid-claim less than 30 s ago); nothing was claimed, retry later`,
    );
  }
}
