import { Code, ConnectError } from "@connectrpc/connect";
import { requireEndpointAccess, requireScope, requireTenantAccess, requireResourceAccess } from "../auth/index.js";
import type { Claims } from "../auth/index.js";
import {
  BlobNotFoundError,
  BlobTooLargeError,
  blobErrorToConnect,
  withBlobLease,
  type BlobInfo,
  type BlobStore,
} from "../blob/index.js";
import { checkResourceId } from "../ids/index.js";
import { describeEndpoint, validateEndpointRef, type EndpointIds } from "./endpoint-ref.js";
import { endpointArchive } from "./endpoint-archive.js";
import { EpufsMetrics } from "./epufs-metrics.js";
import {
  endpointPrefix,
  fileKey,
  leasesPrefixOf,
  pgdataPrefix,
  quotaLeasePrefix,
  tenantPrefix,
  timelinePrefix,
} from "./epufs-keys.js";
import type { CompiledEpufsOptions } from "./epufs-options.js";
import { formatBytes } from "./format-bytes.js";
import { KeyedMutex } from "./keyed-mutex.js";
import { validatePgdataPath } from "./pgdata-path.js";
import { quoteInput } from "../errors/index.js";

/**
 * Longest time one put may hold its endpoint's quota lease; a replica that
 * crashes mid-put blocks the endpoint's puts for this long plus the clock skew
 * tolerance (30 s).
 */
const quotaLeaseMs = 60_000;

/** One stored file, as every transport reports it. */
export interface EpufsFileInfo {
  /** Path relative to PGDATA. */
  readonly path: string;
  readonly size: number;
  /** Opaque; changes whenever the content is replaced. */
  readonly version: string;
  readonly modified: Date;
}

/** An endpoint as a request names it (ids not yet validated). */
export interface EndpointRefInput {
  readonly tenantId: string;
  readonly timelineId: string;
  readonly endpointId: string;
}

export interface PutFileInput {
  readonly endpoint: EndpointRefInput | undefined;
  readonly path: string;
  /** Declared size: the put fails unless exactly this many bytes arrive. */
  readonly size?: number;
}

export type GetFileResult =
  | { readonly info: EpufsFileInfo; readonly notModified: true }
  | { readonly info: EpufsFileInfo; readonly notModified: false; readonly body: AsyncIterable<Uint8Array> };

export interface FilePage {
  readonly files: EpufsFileInfo[];
  /** Empty on the last page. */
  readonly nextPageToken: string;
}

export interface DeletedFiles {
  readonly files: number;
  readonly bytes: number;
}

/**
 * The Endpoint Persistent Unlogged Files Storage: small per-endpoint PGDATA
 * files kept in a blob store under
 * tenants/<tenant>/timelines/<timeline>/endpoints/<endpoint>/pgdata/<path>.
 *
 * Transport-free: every method takes the call's verified claims (undefined on
 * a server run without auth) and throws ConnectError with the right code.
 * Puts of one endpoint run one at a time, across every replica sharing the
 * store: in this process behind a mutex, across processes behind the
 * endpoint's quota lease in the store (withBlobLease), so the quota check and
 * the put cannot interleave with another put of that endpoint.
 */
export class Epufs {
  private readonly endpointLocks = new KeyedMutex();

  constructor(
    private readonly store: BlobStore,
    private readonly options: CompiledEpufsOptions,
    readonly metrics: EpufsMetrics = new EpufsMetrics(),
  ) {}

  async putFile(
    claims: Claims | undefined,
    input: PutFileInput,
    body: AsyncIterable<Uint8Array>,
    signal?: AbortSignal,
  ): Promise<EpufsFileInfo> {
    const { ids, key } = checkFileAccess(claims, input.endpoint, input.path);
    const path = input.path;
    const { allowedPaths, maxFileBytes } = this.options;
    if (!allowedPaths.allows(path)) {
      throw new ConnectError(
        `path ${quoteInput(path)} is not on the allow-list (${allowedPaths.patterns.join(", ")}); only these files may be stored (--allowed-paths)`,
        Code.FailedPrecondition,
      );
    }
    if (input.size !== undefined && input.size > maxFileBytes) {
      throw this.fileTooLarge(path, input.size);
    }
    return this.endpointLocks.run(endpointPrefix(ids), signal, () =>
      this.underQuotaLease(ids, signal, (leaseSignal) => this.putUnderLease(ids, input, key, body, leaseSignal)),
    );
  }

  /** Runs `put` holding the endpoint's quota lease; its signal also aborts when the lease runs out. */
  private async underQuotaLease<T>(
    ids: EndpointIds,
    signal: AbortSignal | undefined,
    put: (signal: AbortSignal) => Promise<T>,
  ): Promise<T> {
    try {
      return await withBlobLease(
        this.store,
        quotaLeasePrefix(ids),
        { leaseMs: quotaLeaseMs, ...(signal ? { signal } : {}) },
        put,
      );
    } catch (error) {
      throw blobErrorToConnect(error);
    }
  }

  private async putUnderLease(
    ids: EndpointIds,
    input: PutFileInput,
    key: string,
    body: AsyncIterable<Uint8Array>,
    signal: AbortSignal,
  ): Promise<EpufsFileInfo> {
    const path = input.path;
    const { maxFileBytes } = this.options;
    const othersBytes = await this.usedBytes(ids, path);
    const available = Math.max(0, this.options.endpointQuotaBytes - othersBytes);
    if (input.size !== undefined && input.size > available) {
      throw this.overQuota(ids, path, othersBytes, input.size);
    }
    const maxBytes = Math.min(maxFileBytes, available);
    try {
      const info = await this.store.put(key, body, {
        maxBytes,
        signal,
        ...(input.size !== undefined ? { expectedBytes: input.size } : {}),
      });
      this.metrics.bytesIn.inc(info.size);
      return toFileInfo(path, info);
    } catch (error) {
      if (error instanceof BlobTooLargeError) {
        throw maxBytes === maxFileBytes ? this.fileTooLarge(path) : this.overQuota(ids, path, othersBytes);
      }
      throw error;
    }
  }

  async getFile(
    claims: Claims | undefined,
    endpoint: EndpointRefInput | undefined,
    path: string,
    ifNoneMatch: string,
    signal?: AbortSignal,
  ): Promise<GetFileResult> {
    const { ids, key } = checkFileAccess(claims, endpoint, path);
    try {
      const head = await this.store.head(key);
      if (head === undefined) throw new BlobNotFoundError(key);
      if (ifNoneMatch !== "" && ifNoneMatch === head.etag) {
        return { info: toFileInfo(path, head), notModified: true };
      }
      const object = await this.store.get(key, signal ? { signal } : {});
      return { info: toFileInfo(path, object.info), notModified: false, body: this.metrics.countOut("file", object.body) };
    } catch (error) {
      if (error instanceof BlobNotFoundError) throw fileNotFound(ids, path);
      throw blobErrorToConnect(error);
    }
  }

  async listFiles(
    claims: Claims | undefined,
    endpoint: EndpointRefInput | undefined,
    pageSize: number,
    pageToken: string,
  ): Promise<FilePage> {
    const ids = validateEndpointRef(endpoint);
    requireEndpointAccess(claims, ids);
    const prefix = pgdataPrefix(ids);
    try {
      const page = await this.store.list(prefix, {
        ...(pageSize > 0 ? { pageSize } : {}),
        ...(pageToken !== "" ? { pageToken } : {}),
      });
      return {
        files: page.items.map((item) => toFileInfo(item.key.slice(prefix.length), item)),
        nextPageToken: page.nextPageToken ?? "",
      };
    } catch (error) {
      throw blobErrorToConnect(error);
    }
  }

  /** The endpoint's files as one tar stream (checks run before the first byte). */
  getEndpointArchive(
    claims: Claims | undefined,
    endpoint: EndpointRefInput | undefined,
    signal?: AbortSignal,
  ): AsyncIterable<Uint8Array> {
    const ids = validateEndpointRef(endpoint);
    requireEndpointAccess(claims, ids);
    const { store, metrics } = this;
    return (async function* () {
      try {
        yield* metrics.countOut("archive", endpointArchive(store, pgdataPrefix(ids), signal));
      } catch (error) {
        throw blobErrorToConnect(error);
      }
    })();
  }

  async deleteFile(claims: Claims | undefined, endpoint: EndpointRefInput | undefined, path: string): Promise<DeletedFiles> {
    const { ids, key } = checkFileAccess(claims, endpoint, path);
    try {
      const head = await this.store.head(key);
      if (head === undefined || !(await this.store.delete(key))) throw fileNotFound(ids, path);
      return { files: 1, bytes: head.size };
    } catch (error) {
      throw blobErrorToConnect(error);
    }
  }

  async deleteEndpoint(claims: Claims | undefined, endpoint: EndpointRefInput | undefined): Promise<DeletedFiles> {
    const ids = validateEndpointRef(endpoint);
    requireScope(claims, "control_plane");
    requireEndpointAccess(claims, ids);
    return this.deletePrefix(endpointPrefix(ids));
  }

  async deleteTimeline(claims: Claims | undefined, tenantId: string, timelineId: string): Promise<DeletedFiles> {
    checkResourceId("tenant_id", tenantId);
    checkResourceId("timeline_id", timelineId);
    requireScope(claims, "control_plane");
    requireResourceAccess(claims, { tenantId, timelineId });
    return this.deletePrefix(timelinePrefix(tenantId, timelineId));
  }

  async deleteTenant(claims: Claims | undefined, tenantId: string): Promise<DeletedFiles> {
    checkResourceId("tenant_id", tenantId);
    requireScope(claims, "control_plane");
    requireTenantAccess(claims, tenantId);
    return this.deletePrefix(tenantPrefix(tenantId));
  }

  private async deletePrefix(prefix: string): Promise<DeletedFiles> {
    try {
      const counts = await this.store.deletePrefix(prefix);
      await this.store.deletePrefix(leasesPrefixOf(prefix));
      return { files: counts.objects, bytes: counts.bytes };
    } catch (error) {
      throw blobErrorToConnect(error);
    }
  }

  /** Bytes taken by the endpoint's files other than `exceptPath` (the one being replaced). */
  private async usedBytes(ids: EndpointIds, exceptPath: string): Promise<number> {
    const exceptKey = fileKey(ids, exceptPath);
    let total = 0;
    try {
      for await (const info of this.store.listAll(pgdataPrefix(ids))) {
        if (info.key !== exceptKey) total += info.size;
      }
    } catch (error) {
      throw blobErrorToConnect(error);
    }
    return total;
  }

  private fileTooLarge(path: string, size?: number): ConnectError {
    const limit = formatBytes(this.options.maxFileBytes);
    const what = size === undefined ? `is larger than ${limit}` : `is ${formatBytes(size)}`;
    return new ConnectError(
      `file ${quoteInput(path)} ${what}; the limit is ${limit} (--max-file-bytes); nothing was stored`,
      Code.ResourceExhausted,
    );
  }

  private overQuota(ids: EndpointIds, path: string, othersBytes: number, size?: number): ConnectError {
    this.metrics.quotaRefusals.inc();
    const quota = formatBytes(this.options.endpointQuotaBytes);
    const what = size === undefined ? "does not fit" : `(${formatBytes(size)}) does not fit`;
    return new ConnectError(
      `file ${quoteInput(path)} ${what} in endpoint ${describeEndpoint(ids)}'s quota of ${quota}: its other files take ${formatBytes(othersBytes)} (--endpoint-quota-bytes); nothing was stored`,
      Code.ResourceExhausted,
    );
  }
}

/** Validates the ids and the path, then checks the token covers the endpoint. */
function checkFileAccess(
  claims: Claims | undefined,
  endpoint: EndpointRefInput | undefined,
  path: string,
): { ids: EndpointIds; key: string } {
  const ids = validateEndpointRef(endpoint);
  validatePgdataPath(path);
  requireEndpointAccess(claims, ids);
  return { ids, key: fileKey(ids, path) };
}

function toFileInfo(path: string, info: BlobInfo): EpufsFileInfo {
  return { path, size: info.size, version: info.etag, modified: info.modified };
}

function fileNotFound(ids: EndpointIds, path: string): ConnectError {
  return new ConnectError(`file ${quoteInput(path)} of endpoint ${describeEndpoint(ids)} does not exist`, Code.NotFound);
}
