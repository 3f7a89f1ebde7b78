import { rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { Code } from "@connectrpc/connect";
import type { Logger } from "pino";
import { openBlobStore, type BlobStore } from "../blob/index.js";
import { chownTree, type OsUser } from "../pg/index.js";
import {
  describeTimeline, planRestore, resolveBranchPoint, resolveHistory, restoreTimeline, TimelineError, writeWalPiece,
  type TimelineRef, type WalLayout,
} from "../timeline/index.js";
import { formatLsn } from "../wal/index.js";
import type { ComputeMode } from "./compute-spec.js";
import type { CompiledComputeCtlOptions } from "./compute-ctl-options.js";

/**
 * A read-only compute on a timeline, as Postgres hot standby (standby.signal):
 * Static lays the timeline down as of an LSN and stays there; Replica lays it
 * down to the durable end and follows the primary, writing the WAL the store
 * gains into pg_wal, where the standby's startup process reads it. Neither
 * claims a generation or ships WAL: the primary is never fenced by one.
 */
export class TimelineStandby {
  #following: Promise<void> | undefined;
  readonly #stop = new AbortController();

  private constructor(
    readonly store: BlobStore,
    readonly ref: TimelineRef,
    readonly mode: Exclude<ComputeMode, { kind: "primary" }>,
    /** The end of the WAL written into pg_wal so far. */
    private written: bigint,
    private readonly layout: WalLayout,
    /** Where each generation known so far began writing. */
    private readonly knownStarts: Set<bigint>,
    private readonly logger: Logger,
  ) {}

  /** Settings Postgres needs as this standby. */
  get settings(): Record<string, string> {
    return {
      hot_standby: "on",
      // Segments the follower writes into must not be recycled under it.
      wal_recycle: "off",
      ...(this.mode.kind === "replica" ? { wal_retrieve_retry_interval: "100ms" } : {}),
    };
  }

  /**
   * Lays PGDATA down from the timeline (as of the Static LSN, normalised down
   * to a record end) and marks it a standby. On failure PGDATA is removed.
   * NOT_FOUND for a timeline that does not exist; OUT_OF_RANGE for an LSN
   * outside its history.
   */
  static async start(
    storage: string,
    ref: TimelineRef,
    mode: Exclude<ComputeMode, { kind: "primary" }>,
    options: CompiledComputeCtlOptions,
    deps: { readonly user: OsUser; readonly logger: Logger; readonly signal: AbortSignal },
  ): Promise<TimelineStandby> {
    const store = await openBlobStore(storage, options.blobStoreOptions);
    const { pgdata } = options;
    try {
      const history = await resolveHistory(store, ref);
      const upTo = mode.kind === "static" ? await resolveBranchPoint(store, history, { lsn: mode.lsn }, new Date(), deps.signal) : undefined;
      const plan = await planRestore(store, ref, upTo === undefined ? {} : { upTo });
      if (!plan) throw new TimelineError(ref, "holds no data yet: start a primary on it first", Code.FailedPrecondition);
      await rm(pgdata, { recursive: true, force: true });
      const { startLsn } = await restoreTimeline(store, plan, pgdata, { concurrency: options.snapshotConcurrency, signal: deps.signal });
      await writeFile(path.join(pgdata, "standby.signal"), "");
      await chownTree(pgdata, deps.user);
      deps.logger.info({ timeline: describeTimeline(ref), mode: mode.kind, lsn: formatLsn(startLsn) }, "timeline laid down for a standby");
      const layout: WalLayout = {
        walDir: path.join(pgdata, "pg_wal"), pgTli: history.meta.pgTli, segmentBytes: history.meta.walSegmentBytes,
        owner: { uid: deps.user.uid, gid: deps.user.gid },
      };
      return new TimelineStandby(store, ref, mode, startLsn, layout, new Set(history.generations.starts.values()), deps.logger);
    } catch (err) {
      await rm(pgdata, { recursive: true, force: true });
      await store.close();
      throw err;
    }
  }

  /** A Replica starts following the store every `pollMs`; a Static compute never does. */
  startFollowing(pollMs: number, onProblem: (problem: string | undefined) => void): void {
    if (this.mode.kind !== "replica") return;
    this.#following = this.#follow(pollMs, onProblem);
  }

  async #follow(pollMs: number, onProblem: (problem: string | undefined) => void): Promise<void> {
    const signal = this.#stop.signal;
    let failing = false;
    while (!signal.aborted) {
      try {
        await this.#catchUp(signal);
        if (failing) onProblem(undefined);
        failing = false;
      } catch (err) {
        if (signal.aborted) return;
        if (!failing) onProblem(`replica cannot follow timeline ${describeTimeline(this.ref)}: ${(err as Error).message}; retrying`);
        failing = true;
        this.logger.warn({ err }, "replica could not read the timeline's new WAL");
      }
      await delay(pollMs, undefined, { signal }).catch(() => undefined);
    }
  }

  /**
   * Writes the durable WAL after what pg_wal holds. A new primary generation
   * that started below it rewrites from its start: the bytes past its start
   * were an unfinished record the standby never applied.
   */
  async #catchUp(signal: AbortSignal): Promise<void> {
    const history = await resolveHistory(this.store, this.ref);
    for (const start of history.generations.starts.values()) {
      if (this.knownStarts.has(start)) continue;
      this.knownStarts.add(start);
      if (start < this.written) this.written = start;
    }
    for (const piece of history.pieces) {
      if (piece.to <= this.written) continue;
      const from = piece.from > this.written ? piece.from : this.written;
      await writeWalPiece(this.store, { ...piece, from }, this.layout, signal);
      this.written = piece.to;
    }
  }

  async close(): Promise<void> {
    this.#stop.abort();
    await this.#following;
    await this.store.close();
  }
}
