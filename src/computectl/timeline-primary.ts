import { readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { execa } from "execa";
import type { Logger } from "pino";
import type pg from "pg";
import { openBlobStore, type BlobStore } from "../blob/index.js";
import { chownTree, removeOrphanedShmem, type OsUser } from "../pg/index.js";
import {
  bootstrapTimeline, claimNextGeneration, createTimelineMeta, describeTimeline, planRestore, readTimelineMeta, restoreTimeline,
  shutdownCheckpointOf, storeCall, successorOf, takeOnlineSnapshot, takeShutdownSnapshot, TimelineError, timelineMetaKey, walSegmentBytesOf, WalShipper, writeGenerationStart,
  type FileChunkCache, type GenerationClaim, type TimelineMeta, type TimelineRef,
} from "../timeline/index.js";
import { formatLsn, parseLsn } from "../wal/index.js";
import { Code } from "@connectrpc/connect";
import type { CompiledComputeCtlOptions } from "./compute-ctl-options.js";
import { ensureInitdbTemplate } from "./initdb-template.js";

/** The physical slot that keeps Postgres from recycling WAL the shipper has not put yet. */
const shipperSlot = "pgmesh_wal_shipper";

export interface TimelinePrimaryHooks {
  /** A newer primary claimed the timeline: Postgres must stop at once. */
  readonly onFenced: (reason: string) => void;
  /** WAL shipping fell behind (the store is down) or, with undefined, caught up. */
  readonly onLagging: (problem: string | undefined) => void;
  /** More WAL than --max-unshipped-wal-bytes waits for the store (a reason), or, with undefined, no longer. */
  readonly onBacklogOverLimit: (reason: string | undefined) => void;
}

/**
 * One primary generation of a timeline, as compute-ctl runs it: claims the
 * timeline, lays PGDATA down from its snapshot and WAL (or gives a new
 * timeline its base from the initdb template), ships WAL while Postgres
 * runs, and at a clean stop makes the shutdown checkpoint durable and takes a
 * shutdown snapshot.
 */
export class TimelinePrimary {
  #shipper: WalShipper | undefined;
  #shipperClient: pg.Client | undefined;
  #cache: FileChunkCache | undefined;
  #startLsn = 0n;
  /** The end of the newest snapshot: the WAL a restart would replay starts near here. */
  #lastSnapshotEnd = 0n;
  #snapshotting: Promise<void> | undefined;
  #backlogOverLimit = false;
  readonly #snapshotAbort = new AbortController();

  private constructor(
    readonly store: BlobStore,
    readonly ref: TimelineRef,
    readonly meta: TimelineMeta,
    readonly claim: GenerationClaim,
    private readonly options: CompiledComputeCtlOptions,
    private readonly logger: Logger,
  ) {}

  /** Where this generation's Postgres writes from. */
  get startLsn(): bigint {
    return this.#startLsn;
  }

  get shippedLsn(): bigint {
    return this.#shipper?.shippedLsn ?? this.#startLsn;
  }

  /**
   * Claims the next generation of the timeline (creating the timeline if it
   * does not exist) and lays PGDATA down. On failure PGDATA is removed: never
   * half laid down.
   */
  static async start(
    storage: string,
    ref: TimelineRef,
    options: CompiledComputeCtlOptions,
    deps: { readonly user: OsUser; readonly logger: Logger; readonly signal: AbortSignal },
  ): Promise<TimelinePrimary> {
    const store = await storeCall(ref, timelineMetaKey(ref), `open the store ${storage}`, () => openBlobStore(storage, options.blobStoreOptions));
    try {
      const template = await ensureInitdbTemplate({ binaries: options.binaries, user: deps.user, templateRoot: options.templateRoot });
      const meta = (await readTimelineMeta(store, ref)) ?? (await createTimelineMeta(store, {
        ...ref, pgMajor: options.binaries.major, pgTli: 1, walSegmentBytes: await walSegmentBytesOf(template), createdAt: new Date(), ancestor: null,
      }));
      if (meta.pgMajor !== options.binaries.major) {
        throw new TimelineError(ref, `holds PostgreSQL ${meta.pgMajor} data; this compute runs PostgreSQL ${options.binaries.major}`, Code.FailedPrecondition);
      }
      const claim = await claimNextGeneration(store, ref, options.computeId);
      const primary = new TimelinePrimary(store, ref, meta, claim, options, deps.logger);
      try {
        await primary.#layDown(template, deps.user, deps.signal);
      } catch (err) {
        await rm(options.pgdata, { recursive: true, force: true });
        await rm(cachePath(options.pgdata), { force: true });
        throw err;
      }
      return primary;
    } catch (err) {
      await store.close();
      throw err;
    }
  }

  async #layDown(template: string, user: OsUser, signal: AbortSignal): Promise<void> {
    const { pgdata } = this.options;
    const transfer = { concurrency: this.options.snapshotConcurrency, signal };
    const plan = await planRestore(this.store, this.ref);
    await removeOrphanedShmem(pgdata, { waitMs: 5_000 });
    await rm(path.join(pgdata, "postmaster.pid"), { force: true });
    if (!plan) {
      // A new timeline: its base is the initdb template, as this generation.
      await rm(pgdata, { recursive: true, force: true });
      await execa("cp", ["-a", "--reflink=auto", template, pgdata]);
      const base = await bootstrapTimeline(this.store, this.ref, this.claim.generation, pgdata, {
        ...transfer, pgMajor: this.meta.pgMajor, pgTli: this.meta.pgTli, segmentBytes: this.meta.walSegmentBytes,
      });
      this.#startLsn = base.startLsn;
      this.#lastSnapshotEnd = base.startLsn;
      this.#cache = base.cache;
    } else {
      const cache = await readCache(pgdata, this.ref);
      // Without a cache of this timeline the local files are of unknown origin: start from nothing.
      if (!cache) await rm(pgdata, { recursive: true, force: true });
      const restored = await restoreTimeline(this.store, plan, pgdata, { ...transfer, ...(cache ? { cache } : {}) });
      this.#startLsn = restored.startLsn;
      this.#lastSnapshotEnd = plan.manifest.endLsn;
      this.#cache = restored.cache;
      await this.#checkNotFenced();
      await writeGenerationStart(this.store, this.ref, this.claim.generation, restored.startLsn);
      this.logger.info({ timeline: describeTimeline(this.ref), snapshot: plan.snapshot.key, durableEnd: formatLsn(plan.history.durableEnd), startLsn: formatLsn(restored.startLsn) }, "timeline laid down");
    }
    // PGDATA changes from now on: the cache is rewritten at the next clean stop.
    await rm(cachePath(pgdata), { force: true });
    await chownTree(pgdata, user);
  }

  async #checkNotFenced(): Promise<void> {
    const successor = await successorOf(this.store, this.ref, this.claim.generation);
    if (successor) throw fencedError(this.ref, this.claim, successor);
  }

  /**
   * Starts shipping WAL from startLsn over a maintenance connection it keeps;
   * online snapshots, past --snapshot-wal-bytes of WAL, get one of their own.
   */
  async startShipping(connect: () => Promise<pg.Client>, hooks: TimelinePrimaryHooks): Promise<void> {
    const client = await connect();
    this.#shipperClient = client;
    await client.query(
      `SELECT pg_catalog.pg_create_physical_replication_slot($1, true)
        WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_replication_slots WHERE slot_name = $1)`,
      [shipperSlot],
    );
    this.#shipper = new WalShipper({
      store: this.store,
      timeline: this.ref,
      generation: this.claim.generation,
      walDir: path.join(this.options.pgdata, "pg_wal"),
      pgTli: this.meta.pgTli,
      segmentBytes: this.meta.walSegmentBytes,
      startLsn: this.#startLsn,
      pollMs: Math.max(10, Math.floor(this.options.rpoMs / 4)),
      flushLsn: async () => parseLsn((await client.query<{ lsn: string }>("SELECT pg_catalog.pg_current_wal_flush_lsn()::text AS lsn")).rows[0]!.lsn),
      onShipped: async (lsn) => {
        await client.query(
          `SELECT pg_catalog.pg_replication_slot_advance(slot_name, $2::pg_lsn) FROM pg_catalog.pg_replication_slots
            WHERE slot_name = $1 AND restart_lsn < $2::pg_lsn`,
          [shipperSlot, formatLsn(lsn)],
        ).catch((err: unknown) => this.logger.debug({ err }, "could not advance the WAL shipper's replication slot"));
        if (!this.#snapshotting && lsn - this.#lastSnapshotEnd >= BigInt(this.options.snapshotWalBytes)) {
          this.#snapshotting = this.#onlineSnapshot(connect).finally(() => (this.#snapshotting = undefined));
        }
      },
      onFenced: (successor) => hooks.onFenced(fencedError(this.ref, this.claim, successor).rawMessage),
      onLagging: hooks.onLagging,
      onBacklog: (unshipped) => {
        const over = unshipped > BigInt(this.options.maxUnshippedWalBytes);
        if (over === this.#backlogOverLimit) return;
        this.#backlogOverLimit = over;
        hooks.onBacklogOverLimit(over
          ? `writes paused: ${unshipped} bytes of WAL are not in timeline ${describeTimeline(this.ref)}'s store yet, over the ${this.options.maxUnshippedWalBytes}-byte limit (--max-unshipped-wal-bytes); they resume once shipping catches up`
          : undefined);
      },
    });
    this.#shipper.start();
  }

  async #onlineSnapshot(connect: () => Promise<pg.Client>): Promise<void> {
    const signal = this.#snapshotAbort.signal;
    let session: pg.Client | undefined;
    try {
      session = await connect();
      const { snapshot, cache } = await takeOnlineSnapshot(this.store, this.ref, this.claim.generation, this.options.pgdata, session,
        (lsn, wait) => this.#shipped(lsn, wait), {
          concurrency: this.options.snapshotConcurrency, signal, pgMajor: this.meta.pgMajor, pgTli: this.meta.pgTli,
          ...(this.#cache ? { cache: this.#cache } : {}),
        });
      this.#lastSnapshotEnd = snapshot.lsn;
      this.#cache = cache;
      this.logger.info({ snapshot: snapshot.key }, "online snapshot taken");
    } catch (err) {
      if (!signal.aborted) this.logger.warn({ err }, "online snapshot failed; the next one is tried after more WAL");
    } finally {
      await session?.end().catch(() => undefined);
    }
  }

  /** Resolves once the shipper has put the WAL before `lsn`. */
  async #shipped(lsn: bigint, signal?: AbortSignal): Promise<void> {
    while (this.shippedLsn < lsn) {
      signal?.throwIfAborted();
      await delay(Math.max(10, Math.floor(this.options.rpoMs / 4)));
    }
  }

  /** Stops shipping and any online snapshot (before Postgres stops: their connections go with it). */
  async stopShipping(): Promise<void> {
    this.#snapshotAbort.abort(new Error("the compute is stopping"));
    await this.#snapshotting;
    await this.#shipper?.stop();
    await this.#shipperClient?.end().catch(() => undefined);
    this.#shipperClient = undefined;
  }

  /**
   * After a clean (fast) shutdown: ships the WAL up to the end of the
   * shutdown checkpoint, takes a shutdown snapshot of what changed, and keeps
   * a cache of PGDATA beside it for a delta start on this node. Returns the
   * shutdown checkpoint's LSN.
   */
  async finishCleanStop(signal: AbortSignal): Promise<bigint> {
    const { pgdata } = this.options;
    await this.stopShipping();
    const checkpoint = await shutdownCheckpointOf(pgdata, this.meta.pgTli);
    if (this.#shipper) await this.#shipper.shipUpTo(checkpoint.endLsn, signal);
    const { cache } = await retryUnavailable(signal, () => takeShutdownSnapshot(this.store, this.ref, this.claim.generation, pgdata, {
      concurrency: this.options.snapshotConcurrency, signal, pgMajor: this.meta.pgMajor, pgTli: this.meta.pgTli,
      ...(this.#cache ? { cache: this.#cache } : {}),
    }));
    await writeCache(pgdata, this.ref, cache);
    return checkpoint.checkpointLsn;
  }

  async close(): Promise<void> {
    await this.stopShipping();
    await this.store.close();
  }
}

function fencedError(ref: TimelineRef, claim: GenerationClaim, successor: GenerationClaim): TimelineError {
  return new TimelineError(
    ref,
    `fenced: generation ${successor.generation} (compute ${successor.computeId}) took the timeline over from this compute's generation ${claim.generation}; it no longer writes`,
    Code.FailedPrecondition,
  );
}

/** Retries while the store is unavailable, until the signal gives up. */
async function retryUnavailable<T>(signal: AbortSignal, work: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await work();
    } catch (err) {
      if (!(err instanceof TimelineError) || err.code !== Code.Unavailable || signal.aborted) throw err;
      await delay(Math.min(5_000, 100 * 2 ** attempt), undefined, { signal });
    }
  }
}

/** The cache of PGDATA's files beside it (not inside: it is not part of any snapshot). */
function cachePath(pgdata: string): string {
  return `${pgdata}.timeline-files.json`;
}

/** Whether a timeline's PGDATA was left beside its cache by a clean stop. */
export async function hasTimelineCache(pgdata: string): Promise<boolean> {
  return readFile(cachePath(pgdata)).then(() => true, () => false);
}

async function readCache(pgdata: string, ref: TimelineRef): Promise<FileChunkCache | undefined> {
  try {
    const json = JSON.parse(await readFile(cachePath(pgdata), "utf8")) as { tenant_id: string; timeline_id: string; files: [string, number, string, string[]][] };
    if (json.tenant_id !== ref.tenantId || json.timeline_id !== ref.timelineId) return undefined;
    return new Map(json.files.map(([file, size, mtimeNs, chunks]) => [file, { size, mtimeNs, chunks }]));
  } catch {
    return undefined;
  }
}

async function writeCache(pgdata: string, ref: TimelineRef, cache: FileChunkCache): Promise<void> {
  const files = [...cache].map(([file, entry]) => [file, entry.size, entry.mtimeNs, entry.chunks]);
  await writeFile(cachePath(pgdata), JSON.stringify({ tenant_id: ref.tenantId, timeline_id: ref.timelineId, files }));
}
