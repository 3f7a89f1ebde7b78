import { createHash, randomUUID } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, unlink } from "node:fs/promises";
import type { Readable } from "node:stream";
import {
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
} from "@aws-sdk/client-s3";
import {
  BlobConditionalWritesUnsupportedError,
  BlobError,
  BlobIntegrityError,
  BlobNotFoundError,
  BlobPreconditionFailedError,
} from "./blob-errors.js";
import { validateBlobKey, validateBlobPrefix } from "./blob-key.js";
import type {
  BlobInfo,
  BlobObject,
  BlobPage,
  BlobStore,
  DeletedCounts,
  GetOptions,
  ListOptions,
  PutOptions,
} from "./blob-store.js";
import { listAllPages } from "./list-all-pages.js";
import { decodePageToken, effectivePageSize, encodePageToken } from "./page-token.js";
import { SpoolSweeper, writeSpoolFile } from "./spool-file.js";
import { quoteInput } from "../errors/index.js";

export interface CompiledS3BlobStoreOptions {
  readonly bucket: string;
  /** Key prefix inside the bucket, without leading or trailing "/" ("" for none). */
  readonly prefix: string;
  /** Custom endpoint (MinIO, R2, s3rver ...); path-style addressing is used with it. */
  readonly endpoint?: string;
  readonly region: string;
  /** Directory for spool files of puts; must have room for the largest object. */
  readonly spoolDir: string;
  /** Explicit credentials; otherwise the SDK's default chain (environment, profile ...). */
  readonly credentials?: S3ClientConfig["credentials"];
  /**
   * Whether the server enforces If-None-Match / If-Match on PutObject (AWS S3
   * does; s3rver and some S3-compatible servers ignore them), as probed by
   * probeConditionalWrites() or set by the operator.
   */
  readonly conditionalWrites: boolean;
}

/**
 * A blob store in an S3 bucket (AWS S3 or any S3-compatible endpoint).
 *
 * A put first spools the body to a local file, then sends one PutObject with a
 * known Content-Length and Content-MD5. That way maxBytes/expectedBytes and
 * cancellation are settled before anything reaches the bucket (a refused or
 * cancelled put sends nothing), no multipart upload can be left behind, and
 * the object appears atomically. Objects here are small (Epufs files,
 * extension bundles), so one PutObject (up to 5 GiB) is enough.
 */
export class S3BlobStore implements BlobStore {
  readonly conditionalWrites: boolean;
  private readonly client: S3Client;
  private readonly sweeper: SpoolSweeper;

  constructor(private readonly options: CompiledS3BlobStoreOptions) {
    this.conditionalWrites = options.conditionalWrites;
    this.sweeper = new SpoolSweeper(options.spoolDir);
    this.client = new S3Client({
      region: options.region,
      ...(options.endpoint ? { endpoint: options.endpoint, forcePathStyle: true } : {}),
      ...(options.credentials ? { credentials: options.credentials } : {}),
      // Otherwise streamed bodies get aws-chunked framing that some S3-compatible servers store verbatim.
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
    });
  }

  async put(key: string, body: AsyncIterable<Uint8Array>, options: PutOptions = {}): Promise<BlobInfo> {
    validateBlobKey(key);
    const conditional = options.ifNoneMatch !== undefined || options.ifMatch !== undefined;
    if (conditional && !this.conditionalWrites) {
      throw new BlobConditionalWritesUnsupportedError(
        key,
        "this S3 server does not enforce conditional writes (probed at start, or --s3-conditional-writes off)",
      );
    }
    await mkdir(this.options.spoolDir, { recursive: true });
    this.sweeper.sweepIfDue();
    const spool = await writeSpoolFile(this.options.spoolDir, key, body, { ...options, sync: false, md5: true });
    try {
      const output = await this.client.send(
        new PutObjectCommand({
          Bucket: this.options.bucket,
          Key: this.fullKey(key),
          Body: createReadStream(spool.path),
          ContentLength: spool.size,
          ...(spool.md5Base64 ? { ContentMD5: spool.md5Base64 } : {}),
          ...(options.ifNoneMatch !== undefined ? { IfNoneMatch: options.ifNoneMatch } : {}),
          ...(options.ifMatch !== undefined ? { IfMatch: `"${options.ifMatch}"` } : {}),
        }),
        options.signal ? { abortSignal: options.signal } : {},
      );
      // PutObject does not return LastModified; the completion time here is within
      // a second of it (what a later head() or list() reports).
      return { key, size: spool.size, etag: unquote(output.ETag), modified: new Date() };
    } catch (error) {
      if (conditional && isConditionFailure(error)) {
        throw new BlobPreconditionFailedError(
          key,
          options.ifNoneMatch !== undefined
            ? 'it does not exist yet (ifNoneMatch "*")'
            : `its etag is "${options.ifMatch}" (ifMatch)`,
        );
      }
      throw error;
    } finally {
      await unlink(spool.path).catch(() => undefined);
    }
  }

  async get(key: string, options: GetOptions = {}): Promise<BlobObject> {
    validateBlobKey(key);
    try {
      const output = await this.client.send(
        new GetObjectCommand({ Bucket: this.options.bucket, Key: this.fullKey(key) }),
        options.signal ? { abortSignal: options.signal } : {},
      );
      const info: BlobInfo = {
        key,
        size: output.ContentLength ?? 0,
        etag: unquote(output.ETag),
        modified: output.LastModified ?? new Date(0),
      };
      // With SSE-KMS or SSE-C the ETag is not the content's MD5.
      const etagIsMd5 =
        (output.ServerSideEncryption === undefined || output.ServerSideEncryption === "AES256") &&
        output.SSECustomerAlgorithm === undefined;
      return { info, body: verified(key, output.Body as Readable, info, etagIsMd5, options.signal) };
    } catch (error) {
      if (isNotFound(error)) throw new BlobNotFoundError(key);
      throw error;
    }
  }

  async head(key: string): Promise<BlobInfo | undefined> {
    validateBlobKey(key);
    try {
      const output = await this.client.send(
        new HeadObjectCommand({ Bucket: this.options.bucket, Key: this.fullKey(key) }),
      );
      return {
        key,
        size: output.ContentLength ?? 0,
        etag: unquote(output.ETag),
        modified: output.LastModified ?? new Date(0),
      };
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  async list(prefix: string, options: ListOptions = {}): Promise<BlobPage> {
    validateBlobPrefix(prefix);
    const pageSize = effectivePageSize(options.pageSize);
    const after = decodePageToken(prefix, options.pageToken);
    const output = await this.client.send(
      new ListObjectsV2Command({
        Bucket: this.options.bucket,
        Prefix: this.fullKey(prefix),
        MaxKeys: pageSize,
        ...(after !== undefined ? { StartAfter: this.fullKey(after) } : {}),
      }),
    );
    const items: BlobInfo[] = (output.Contents ?? []).map((object) => ({
      key: this.relativeKey(object.Key ?? ""),
      size: object.Size ?? 0,
      etag: unquote(object.ETag),
      modified: object.LastModified ?? new Date(0),
    }));
    const last = items[items.length - 1];
    return output.IsTruncated && last ? { items, nextPageToken: encodePageToken(prefix, last.key) } : { items };
  }

  listAll(prefix: string): AsyncIterable<BlobInfo> {
    return listAllPages(this, prefix);
  }

  async delete(key: string): Promise<boolean> {
    const existed = (await this.head(key)) !== undefined;
    if (existed) {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.options.bucket, Key: this.fullKey(key) }));
    }
    return existed;
  }

  async deletePrefix(prefix: string): Promise<DeletedCounts> {
    validateBlobPrefix(prefix);
    let objects = 0;
    let bytes = 0;
    let pageToken: string | undefined;
    do {
      // Always list from the start after the previous page's last key: deleting
      // does not disturb a StartAfter-based walk.
      const page = await this.list(prefix, pageToken === undefined ? {} : { pageToken });
      if (page.items.length > 0) {
        const output = await this.client.send(
          new DeleteObjectsCommand({
            Bucket: this.options.bucket,
            Delete: { Objects: page.items.map((item) => ({ Key: this.fullKey(item.key) })), Quiet: true },
          }),
        );
        const failed = output.Errors ?? [];
        if (failed.length > 0) {
          const first = failed[0]!;
          throw new BlobError(
            `deleting ${failed.length} objects under ${quoteInput(prefix)} failed, first ${quoteInput(first.Key ?? "")}: ${first.Code} ${first.Message}`,
          );
        }
        objects += page.items.length;
        bytes += page.items.reduce((sum, item) => sum + item.size, 0);
      }
      pageToken = page.nextPageToken;
    } while (pageToken !== undefined);
    return { objects, bytes };
  }

  async close(): Promise<void> {
    this.client.destroy();
  }

  /**
   * Whether the server enforces If-None-Match on PutObject: creates a probe
   * key with If-None-Match "*" twice; a server that lets the second put through
   * ignores conditions (s3rver does), one that refuses it with 412 enforces
   * them. The probe key is removed again.
   */
  static async probeConditionalWrites(
    options: Omit<CompiledS3BlobStoreOptions, "conditionalWrites">,
  ): Promise<boolean> {
    const store = new S3BlobStore({ ...options, conditionalWrites: false });
    try {
      return await store.probe();
    } finally {
      await store.close();
    }
  }

  private async probe(): Promise<boolean> {
    const key = `.pgmesh-conditional-write-probe/${randomUUID()}`;
    const putOnce = () =>
      this.client.send(
        new PutObjectCommand({ Bucket: this.options.bucket, Key: this.fullKey(key), Body: "", IfNoneMatch: "*" }),
      );
    try {
      await putOnce();
      try {
        await putOnce();
        return false;
      } catch (error) {
        if (isConditionFailure(error)) return true;
        throw error;
      }
    } catch (error) {
      const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
      // A server that rejects the header itself (501 Not Implemented, 400) has no conditions either.
      if (status === 501 || status === 400) return false;
      throw new BlobError(
        `could not probe s3://${this.options.bucket}/${this.options.prefix} for conditional writes (${String(error)}); check that the endpoint is reachable, or skip the probe with --s3-conditional-writes on|off`,
        { cause: error },
      );
    } finally {
      await this.client
        .send(new DeleteObjectCommand({ Bucket: this.options.bucket, Key: this.fullKey(key) }))
        .catch(() => undefined);
    }
  }

  private fullKey(key: string): string {
    return this.options.prefix === "" ? key : `${this.options.prefix}/${key}`;
  }

  private relativeKey(fullKey: string): string {
    return this.options.prefix === "" ? fullKey : fullKey.slice(this.options.prefix.length + 1);
  }
}

/**
 * Passes the body through, checking at the end that its length (and, for a
 * single-part object whose ETag is its MD5, the MD5) is what the response
 * announced, so a short or mixed read fails with BlobIntegrityError instead
 * of passing as content. S3 never serves such reads; servers that rewrite
 * objects in place (s3rver) do.
 */
async function* verified(
  key: string,
  body: Readable,
  info: BlobInfo,
  etagIsMd5: boolean,
  signal: AbortSignal | undefined,
): AsyncGenerator<Uint8Array> {
  // S3 always sends an ETag; a server that loses it mid-rewrite (s3rver) cannot vouch for the bytes.
  if (info.etag === "") throw new BlobIntegrityError(key, "the response carries no ETag");
  const md5 = etagIsMd5 && /^[0-9a-f]{32}$/.test(info.etag) ? createHash("md5") : undefined;
  let size = 0;
  try {
    for await (const chunk of body as AsyncIterable<Uint8Array>) {
      size += chunk.byteLength;
      md5?.update(chunk);
      yield chunk;
    }
  } catch (error) {
    if (signal?.aborted) throw error;
    throw new BlobIntegrityError(key, `the response ended after ${size} of ${info.size} bytes: ${String(error)}`, {
      cause: error,
    });
  } finally {
    body.destroy();
  }
  if (size !== info.size) throw new BlobIntegrityError(key, `${size} bytes arrived, ${info.size} announced`);
  if (md5 && md5.digest("hex") !== info.etag) throw new BlobIntegrityError(key, "content does not match its ETag");
}

function unquote(etag: string | undefined): string {
  return (etag ?? "").replace(/^"|"$/g, "");
}

/**
 * A conditional PutObject that lost: 412 (the condition is false), 409 (a
 * concurrent conditional write to the key won), or 404 (If-Match on a key that
 * does not exist).
 */
function isConditionFailure(error: unknown): boolean {
  const status = (error as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata?.httpStatusCode;
  return status === 412 || status === 409 || status === 404;
}

function isNotFound(error: unknown): boolean {
  if (typeof error !== "object" || error === null) return false;
  const named = error as { name?: string; $metadata?: { httpStatusCode?: number } };
  return named.name === "NoSuchKey" || named.name === "NotFound" || named.$metadata?.httpStatusCode === 404;
}
