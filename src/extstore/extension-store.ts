import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { requireScope, type Claims } from "../auth/index.js";
import { BlobNotFoundError, SpoolSweeper } from "../blob/index.js";
import {
  ControlFileSchema,
  DownloadBundleResponseSchema,
  ExportRemoteExtensionsResponseSchema,
  GetComputeIndexResponseSchema,
  GetExtensionResponseSchema,
  GrantExtensionResponseSchema,
  IndexedExtensionSchema,
  IssueDownloadTokenResponseSchema,
  ListExtensionsResponseSchema,
  ListGrantsResponseSchema,
  PublishExtensionResponseSchema,
  ReviewDecision,
  ReviewExtensionResponseSchema,
  RevokeExtensionResponseSchema,
  Visibility,
  type DownloadBundleRequest,
  type DownloadBundleResponse,
  type ExportRemoteExtensionsRequest,
  type ExportRemoteExtensionsResponse,
  type GetComputeIndexRequest,
  type GetComputeIndexResponse,
  type GetExtensionRequest,
  type GetExtensionResponse,
  type GrantExtensionRequest,
  type GrantExtensionResponse,
  type IssueDownloadTokenRequest,
  type IssueDownloadTokenResponse,
  type ListExtensionsRequest,
  type ListExtensionsResponse,
  type ListGrantsRequest,
  type ListGrantsResponse,
  type PublishExtensionHeader,
  type PublishExtensionRequest,
  type PublishExtensionResponse,
  type ReviewExtensionRequest,
  type ReviewExtensionResponse,
  type RevokeExtensionRequest,
  type RevokeExtensionResponse,
} from "../../gen/pgmesh/extensionstore/v1/extension_store_pb.js";
import { quoteInput } from "../errors/index.js";
import { splitChunks } from "../server/index.js";
import { buildComputeIndex, remoteExtensionsJson, usableBy } from "./compute-index.js";
import { parseControlFile } from "./control-file.js";
import {
  requireNamedBundle,
  signDownloadToken,
  verifyDownloadToken,
} from "./download-token.js";
import { ExtensionCatalog } from "./extension-catalog.js";
import { checkExtensionName, checkPgMajor, checkResourceId } from "../ids/index.js";
import { checkSha256 } from "./check-sha256.js";
import { BundleRejectedError } from "./extension-store-errors.js";
import {
  compileExtensionStoreOptions,
  type CompiledExtensionStoreOptions,
  type ExtensionStoreOptions,
} from "./extension-store-options.js";
import { decodeListPageToken, encodeListPageToken, compareListOrder } from "./list-page-token.js";
import { receiveBundle, type ReceivedBundle } from "./receive-bundle.js";
import { isApproved, type CatalogEntry, type StoredVersion } from "./stored-records.js";
import { reviewStateOf, toExtensionVersion, toGrant } from "./version-message.js";

/**
 * Who calls: the verified claims of the bearer token, or undefined on a
 * server run with --insecure-no-auth (every scope check passes).
 */
export type Caller = Claims | undefined;

/**
 * The extension store: publish, review, catalog, grants, compute indexes,
 * download tokens and downloads, as plain code over a blob store. It does
 * not know the transport; errors are ConnectErrors with codes and messages
 * a person can act on.
 */
export class ExtensionStore {
  readonly options: CompiledExtensionStoreOptions;
  private readonly catalog: ExtensionCatalog;
  private readonly spoolSweeper: SpoolSweeper;

  constructor(options: ExtensionStoreOptions) {
    this.options = compileExtensionStoreOptions(options);
    this.catalog = new ExtensionCatalog(this.options.blobs);
    this.spoolSweeper = new SpoolSweeper(this.options.spoolDir);
  }

  /** PublishExtension (admin): a header, then the tar bytes. */
  async publish(
    messages: AsyncIterable<PublishExtensionRequest>,
    caller: Caller,
    signal?: AbortSignal,
  ): Promise<PublishExtensionResponse> {
    requireScope(caller, "admin");
    const iterator = messages[Symbol.asyncIterator]();
    const first = await iterator.next();
    if (first.done || first.value.msg.case !== "header") {
      throw new ConnectError(
        "the first PublishExtension message must be the header (name, pg_majors, visibility, …), then the tar chunks",
        Code.InvalidArgument,
      );
    }
    const header = checkPublishHeader(first.value.msg.value);
    const chunks = async function* (): AsyncGenerator<Uint8Array> {
      for (let next = await iterator.next(); !next.done; next = await iterator.next()) {
        if (next.value.msg.case === "header") {
          throw new ConnectError("PublishExtension got a second header; send exactly one, first", Code.InvalidArgument);
        }
        if (next.value.msg.case === "chunk") yield next.value.msg.value;
      }
    };
    let received;
    this.spoolSweeper.sweepIfDue();
    try {
      received = await receiveBundle(chunks(), header.name, this.options.limits, this.options.spoolDir);
    } catch (error) {
      throw publishError(header.name, error);
    }
    try {
      if (header.sha256 !== "" && header.sha256 !== received.sha256) {
        throw new ConnectError(
          `the bundle's sha256 is ${received.sha256}, but the header declares ${header.sha256}; nothing was stored (check the file you sent)`,
          Code.InvalidArgument,
        );
      }
      await this.checkNoOtherExtensionsLibrary(header.name, received);
      const existing = await this.catalog.getEntry(header.name, received.sha256);
      if (existing !== undefined) {
        return create(PublishExtensionResponseSchema, { extension: toExtensionVersion(existing), alreadyExisted: true });
      }
      const owner = await this.catalog.ownerOf(received.sha256);
      if (owner !== undefined && owner !== header.name) throw ownedElsewhere(received.sha256, owner);
      const version = storedVersionOf(header, received, new Date(this.options.now()));
      const committed = await this.catalog.commitVersion(version, received.path, received.manifest.controlFiles, signal);
      // Another replica may have published the same bytes meanwhile, under this name or another.
      if (committed.outcome === "owned") throw ownedElsewhere(received.sha256, committed.owner);
      if (committed.outcome === "existed") {
        const entry = await this.requireEntry(header.name, received.sha256);
        return create(PublishExtensionResponseSchema, { extension: toExtensionVersion(entry), alreadyExisted: true });
      }
      this.options.logger.info(
        { extension: version.name, version: version.version, sha256: version.sha256, bytes: version.size },
        "extension bundle published, pending review",
      );
      return create(PublishExtensionResponseSchema, {
        extension: toExtensionVersion({ version, review: undefined }),
        alreadyExisted: false,
      });
    } finally {
      await received.dispose();
    }
  }

  /** ReviewExtension (admin): pending → approved or rejected, once. */
  async review(request: ReviewExtensionRequest, caller: Caller): Promise<ReviewExtensionResponse> {
    requireScope(caller, "admin");
    const name = checkExtensionName(request.name);
    const sha256 = checkSha256(request.sha256);
    if (request.decision === ReviewDecision.UNSPECIFIED) {
      throw new ConnectError("decision is required: REVIEW_DECISION_APPROVE or REVIEW_DECISION_REJECT", Code.InvalidArgument);
    }
    const entry = await this.requireEntry(name, sha256);
    const state = request.decision === ReviewDecision.APPROVE ? "approved" : "rejected";
    // The first decision stands, also when two replicas decide at once.
    const review =
      entry.review ??
      (await this.catalog.claimReview(name, sha256, {
        state,
        reason: request.reason,
        review_time: new Date(this.options.now()).toISOString(),
      }));
    if (review.state !== state) {
      throw new ConnectError(
        `extension "${name}" sha256 ${sha256} is already ${review.state}; a review decision is final (publish a new bundle instead)`,
        Code.FailedPrecondition,
      );
    }
    if (entry.review === undefined) this.options.logger.info({ extension: name, sha256, state }, "extension bundle reviewed");
    return create(ReviewExtensionResponseSchema, { extension: toExtensionVersion({ version: entry.version, review }) });
  }

  /** ListExtensions (control_plane or admin): filtered, ordered by name then publish time, paged. */
  async list(request: ListExtensionsRequest, caller: Caller): Promise<ListExtensionsResponse> {
    requireScope(caller, "control_plane");
    if (request.name !== "") checkExtensionName(request.name);
    if (request.pgMajor !== 0) checkPgMajor(request.pgMajor);
    if (request.pageSize < 0) throw new ConnectError("page_size must not be negative", Code.InvalidArgument);
    const pageSize = Math.min(request.pageSize || this.options.defaultPageSize, this.options.maxPageSize);
    const after = decodeListPageToken(request.pageToken);
    const matching = (await this.catalog.listEntries(request.name === "" ? undefined : request.name))
      .filter((e) => request.pgMajor === 0 || e.version.pg_majors.includes(request.pgMajor))
      .filter((e) => request.reviewState === 0 || reviewStateOf(e) === request.reviewState)
      .sort(compareListOrder)
      .filter((e) => after === undefined || compareListOrder(e, after) > 0);
    const page = matching.slice(0, pageSize);
    const last = page[page.length - 1];
    return create(ListExtensionsResponseSchema, {
      extensions: page.map(toExtensionVersion),
      nextPageToken: matching.length > pageSize && last !== undefined ? encodeListPageToken(last) : "",
    });
  }

  /** GetExtension (control_plane or admin): every bundle of one extension, oldest first. */
  async get(request: GetExtensionRequest, caller: Caller): Promise<GetExtensionResponse> {
    requireScope(caller, "control_plane");
    const name = checkExtensionName(request.name);
    const entries = (await this.catalog.listEntries(name)).sort(compareListOrder);
    if (entries.length === 0) {
      throw new ConnectError(`extension "${name}" has no published bundle`, Code.NotFound);
    }
    return create(GetExtensionResponseSchema, { versions: entries.map(toExtensionVersion) });
  }

  /** GrantExtension (control_plane): idempotent. */
  async grant(request: GrantExtensionRequest, caller: Caller): Promise<GrantExtensionResponse> {
    requireScope(caller, "control_plane");
    const name = checkExtensionName(request.name);
    const tenantId = checkResourceId("tenant_id", request.tenantId);
    if (!(await this.catalog.extensionExists(name))) {
      throw new ConnectError(`extension "${name}" has no published bundle; publish it before granting it`, Code.NotFound);
    }
    const existing = await this.catalog.getGrant(name, tenantId);
    if (existing !== undefined) return create(GrantExtensionResponseSchema, { grant: toGrant(existing) });
    const grant = await this.catalog.claimGrant({ name, tenant_id: tenantId, grant_time: new Date(this.options.now()).toISOString() });
    this.options.logger.info({ extension: name, tenant: tenantId }, "extension granted");
    return create(GrantExtensionResponseSchema, { grant: toGrant(grant) });
  }

  /** RevokeExtension (control_plane). */
  async revoke(request: RevokeExtensionRequest, caller: Caller): Promise<RevokeExtensionResponse> {
    requireScope(caller, "control_plane");
    const name = checkExtensionName(request.name);
    const tenantId = checkResourceId("tenant_id", request.tenantId);
    const revoked = await this.catalog.deleteGrant(name, tenantId);
    if (revoked) this.options.logger.info({ extension: name, tenant: tenantId }, "extension grant revoked");
    return create(RevokeExtensionResponseSchema, { revoked });
  }

  /** ListGrants (control_plane). */
  async listGrants(request: ListGrantsRequest, caller: Caller): Promise<ListGrantsResponse> {
    requireScope(caller, "control_plane");
    const filter = {
      ...(request.name !== "" ? { name: checkExtensionName(request.name) } : {}),
      ...(request.tenantId !== "" ? { tenantId: checkResourceId("tenant_id", request.tenantId) } : {}),
    };
    const grants = await this.catalog.listGrants(filter);
    return create(ListGrantsResponseSchema, { grants: grants.map(toGrant) });
  }

  /** GetComputeIndex (control_plane). */
  async computeIndex(request: GetComputeIndexRequest, caller: Caller): Promise<GetComputeIndexResponse> {
    requireScope(caller, "control_plane");
    const index = await buildComputeIndex(
      this.catalog,
      checkResourceId("tenant_id", request.tenantId),
      checkPgMajor(request.pgMajor),
    );
    return create(GetComputeIndexResponseSchema, {
      extensions: index.items.map(({ entry, controlFiles }) =>
        create(IndexedExtensionSchema, {
          name: entry.version.name,
          bundle: toExtensionVersion(entry),
          controlFiles: controlFiles.map((c) => create(ControlFileSchema, { name: c.fileName, content: c.content })),
        }),
      ),
      libraryIndex: Object.fromEntries(index.libraryIndex),
    });
  }

  /** ExportRemoteExtensions (control_plane): the index in Neon's remote_extensions JSON shape. */
  async exportRemoteExtensions(
    request: ExportRemoteExtensionsRequest,
    caller: Caller,
  ): Promise<ExportRemoteExtensionsResponse> {
    requireScope(caller, "control_plane");
    const index = await buildComputeIndex(
      this.catalog,
      checkResourceId("tenant_id", request.tenantId),
      checkPgMajor(request.pgMajor),
    );
    return create(ExportRemoteExtensionsResponseSchema, { remoteExtensionsJson: remoteExtensionsJson(index) });
  }

  /** IssueDownloadToken (control_plane): only approved bundles the tenant may use. */
  async issueDownloadToken(request: IssueDownloadTokenRequest, caller: Caller): Promise<IssueDownloadTokenResponse> {
    requireScope(caller, "control_plane");
    const tenantId = checkResourceId("tenant_id", request.tenantId);
    if (request.endpointId === "") {
      throw new ConnectError("endpoint_id is required: the endpoint the token is for", Code.InvalidArgument);
    }
    const bundles = [...new Set(request.sha256.map((s, i) => checkSha256(s, `sha256[${i}]`)))];
    if (bundles.length === 0) {
      throw new ConnectError("sha256 is empty; name every bundle the token may fetch", Code.InvalidArgument);
    }
    if (bundles.length > this.options.maxBundlesPerToken) {
      throw new ConnectError(
        `a download token may name at most ${this.options.maxBundlesPerToken} bundles; ${bundles.length} were asked for`,
        Code.InvalidArgument,
      );
    }
    const granted = new Set((await this.catalog.listGrants({ tenantId })).map((g) => g.name));
    for (const sha256 of bundles) {
      const entry = await this.catalog.findBySha256(sha256);
      if (entry === undefined) throw new ConnectError(`no bundle with sha256 ${sha256} is published`, Code.NotFound);
      checkServable(entry, tenantId, granted);
    }
    const ttlSec = Math.min(request.ttlSeconds || this.options.defaultDownloadTokenTtlSec, this.options.maxDownloadTokenTtlSec);
    const { token, expiresAt } = await signDownloadToken(
      this.options.signingKey,
      { tenantId, endpointId: request.endpointId, bundles },
      ttlSec,
      this.options.now(),
    );
    return create(IssueDownloadTokenResponseSchema, { token, expireTime: timestampFromDate(expiresAt) });
  }

  /**
   * DownloadBundle (no bearer token; a download token naming the bundle):
   * the bundle's info, then its bytes in chunks of at most 1 MiB.
   */
  async *download(request: DownloadBundleRequest, signal?: AbortSignal): AsyncGenerator<DownloadBundleResponse> {
    const sha256 = checkSha256(request.sha256);
    const claims = await verifyDownloadToken(request.downloadToken, this.options.verifyKeys, this.options.now());
    requireNamedBundle(claims.bundles, sha256);
    const entry = await this.catalog.findBySha256(sha256);
    if (entry === undefined) throw new ConnectError(`no bundle with sha256 ${sha256} is published`, Code.NotFound);
    const granted = new Set((await this.catalog.listGrants({ tenantId: claims.tenantId })).map((g) => g.name));
    checkServable(entry, claims.tenantId, granted);
    const object = await this.openEntryBundle(entry, signal);
    yield create(DownloadBundleResponseSchema, { msg: { case: "info", value: { extension: toExtensionVersion(entry) } } });
    for await (const chunk of splitChunks(object.body)) {
      yield create(DownloadBundleResponseSchema, { msg: { case: "chunk", value: chunk } });
    }
  }

  /**
   * The newest approved public bundle of `name` that supports `pgMajor`,
   * opened: what Neon's extension gateway layout serves without a token.
   * NOT_FOUND when there is none; private and unapproved bundles are never
   * served this way.
   */
  async openPublicBundle(name: string, pgMajor: number, signal?: AbortSignal): Promise<{ sha256: string; body: AsyncIterable<Uint8Array> }> {
    checkExtensionName(name);
    checkPgMajor(pgMajor);
    const entry = (await this.catalog.listEntries(name))
      .filter((e) => isApproved(e) && usableBy(e, new Set()) && e.version.pg_majors.includes(pgMajor))
      .sort(compareListOrder)
      .at(-1);
    if (entry === undefined) {
      throw new ConnectError(`extension "${name}" has no approved public bundle for Postgres ${pgMajor}`, Code.NotFound);
    }
    return { sha256: entry.version.sha256, body: (await this.openEntryBundle(entry, signal)).body };
  }

  private async openEntryBundle(entry: CatalogEntry, signal: AbortSignal | undefined) {
    return this.catalog.openBundle(entry.version, signal).catch((error: unknown) => {
      if (!(error instanceof BlobNotFoundError)) throw error;
      throw new ConnectError(
        `bundle ${entry.version.sha256} of extension "${entry.version.name}" is cataloged but its bytes are missing from the blob store; publish it again`,
        Code.DataLoss,
      );
    });
  }

  /**
   * A library the bundle may carry by its control file's module_pathname is
   * still not its own when another extension published here has that name
   * (a bundle "shadow" loading '$libdir/hstore' may not ship hstore.so).
   */
  private async checkNoOtherExtensionsLibrary(name: string, received: ReceivedBundle): Promise<void> {
    const checked = new Set<string>([name]);
    for (const { entryName, library } of received.manifest.libraryFiles) {
      if (checked.has(library)) continue;
      checked.add(library);
      if (!(await this.catalog.extensionExists(library))) continue;
      throw new ConnectError(
        `extension "${name}": bundle entry ${quoteInput(entryName)} refused: library "${library}" belongs to extension "${library}", published in this store; a bundle carries only its own extension's libraries; nothing was stored`,
        Code.InvalidArgument,
      );
    }
  }

  private async requireEntry(name: string, sha256: string): Promise<CatalogEntry> {
    const entry = await this.catalog.getEntry(name, sha256);
    if (entry === undefined) {
      throw new ConnectError(`extension "${name}" has no bundle with sha256 ${sha256}`, Code.NotFound);
    }
    return entry;
  }
}

function ownedElsewhere(sha256: string, owner: string): ConnectError {
  return new ConnectError(
    `these exact bytes (sha256 ${sha256}) are already published as extension "${owner}"; a bundle belongs to one extension`,
    Code.AlreadyExists,
  );
}

/** FAILED_PRECONDITION unless approved; PERMISSION_DENIED unless the tenant may use it. */
function checkServable(entry: CatalogEntry, tenantId: string, granted: ReadonlySet<string>): void {
  const { name, sha256 } = entry.version;
  if (!isApproved(entry)) {
    throw new ConnectError(
      `bundle ${sha256} of extension "${name}" is ${entry.review?.state ?? "pending review"}; only approved bundles are served`,
      Code.FailedPrecondition,
    );
  }
  if (!usableBy(entry, granted)) {
    throw new ConnectError(
      `extension "${name}" is private and tenant "${tenantId}" has no grant for it (GrantExtension)`,
      Code.PermissionDenied,
    );
  }
}

function checkPublishHeader(header: PublishExtensionHeader): PublishExtensionHeader {
  checkExtensionName(header.name, "header.name");
  if (header.pgMajors.length === 0) {
    throw new ConnectError("header.pg_majors is empty; give the Postgres major versions the bundle is built for", Code.InvalidArgument);
  }
  header.pgMajors.forEach((m, i) => checkPgMajor(m, `header.pg_majors[${i}]`));
  if (header.visibility !== Visibility.PUBLIC && header.visibility !== Visibility.PRIVATE) {
    throw new ConnectError("header.visibility is required: VISIBILITY_PUBLIC or VISIBILITY_PRIVATE", Code.InvalidArgument);
  }
  if (header.sha256 !== "") checkSha256(header.sha256, "header.sha256");
  return header;
}

function storedVersionOf(
  header: PublishExtensionHeader,
  received: ReceivedBundle,
  now: Date,
): StoredVersion {
  const control = received.manifest.controlFiles.find((c) => c.fileName === `${header.name}.control`)!;
  const version = header.version !== "" ? header.version : parseControlFile(control.content).get("default_version");
  if (version === undefined || version === "") {
    throw new ConnectError(
      `header.version is empty and share/extension/${header.name}.control has no default_version; give a version`,
      Code.InvalidArgument,
    );
  }
  return {
    format: 1,
    name: header.name,
    version,
    sha256: received.sha256,
    pg_majors: [...new Set(header.pgMajors)].sort((a, b) => a - b),
    license: header.license,
    visibility: header.visibility === Visibility.PUBLIC ? "public" : "private",
    needs_shared_preload: header.needsSharedPreload,
    needs_session_preload: header.needsSessionPreload,
    libraries: received.manifest.libraries,
    control_files: received.manifest.controlFiles.map((c) => c.fileName).sort(),
    size: received.size,
    publish_time: now.toISOString(),
    description: header.description,
  };
}

function publishError(name: string, error: unknown): unknown {
  if (!(error instanceof BundleRejectedError)) return error;
  return new ConnectError(
    `extension "${name}": ${error.message}; nothing was stored`,
    error.rejection === "too_large" ? Code.ResourceExhausted : Code.InvalidArgument,
  );
}
