import { Code } from "@connectrpc/connect";
import { open } from "node:fs/promises";
import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import type { BlobStore } from "../blob/index.js";
import { backoffDelayMs } from "../retry/index.js";
import { formatLsn, walSegmentFileName } from "../wal/index.js";
import { successorOf, type GenerationClaim } from "./generations.js";
import { TimelineError } from "./timeline-error.js";
import { describeTimeline, type TimelineRef } from "./timeline-keys.js";
import { putWalChunk } from "./wal-chunks.js";

export interface WalShipperOptions {
  readonly store: BlobStore;
  readonly timeline: TimelineRef;
  readonly generation: number;
  readonly walDir: string;
  readonly pgTli: number;
  readonly segmentBytes: number;
  /** Where this generation's WAL starts (everything before is durable). */
  readonly startLsn: bigint;
  /** How often to look for new WAL. */
  readonly pollMs: number;
  /** Postgres's WAL flush position (pg_current_wal_flush_lsn()). */
  readonly flushLsn: () => Promise<bigint>;
  /** After each durable put: e.g. let Postgres recycle WAL up to here. */
  readonly onShipped?: (lsn: bigint) => Promise<void>;
  /** A newer generation took the timeline over: this primary must stop writing. */
  readonly onFenced: (successor: GenerationClaim) => void;
  /** A put failed (the store is down); shipping retries. undefined: it recovered. */
  readonly onLagging?: (problem: string | undefined) => void;
  /** WAL Postgres has flushed that is not in the store yet, in bytes: after each poll and each shipping pass. */
  readonly onBacklog?: (unshippedBytes: bigint) => void;
}

const maxBackoffMs = 5_000;

/**
 * Ships a primary's WAL to its timeline: polls the flush LSN, reads the new
 * bytes straight from the pg_wal segment files (never past the flush LSN),
 * and puts one chunk per segment touched, after checking that no newer
 * generation has claimed the timeline. A failed put is retried with
 * backoff; WAL waits in pg_wal meanwhile.
 */
export class WalShipper {
  #shipped: bigint;
  #running = false;
  #loop: Promise<void> | undefined;
  #wake: (() => void) | undefined;
  #fenced: GenerationClaim | undefined;
  #failures = 0;

  constructor(readonly options: WalShipperOptions) {
    this.#shipped = options.startLsn;
  }

  /** Everything before this LSN is in the store. */
  get shippedLsn(): bigint {
    return this.#shipped;
  }

  get fencedBy(): GenerationClaim | undefined {
    return this.#fenced;
  }

  start(): void {
    this.#running = true;
    this.#loop = this.#run();
  }

  /** Stops polling (a put in flight finishes). */
  async stop(): Promise<void> {
    this.#running = false;
    this.#wake?.();
    await this.#loop;
  }

  /**
   * Ships everything up to `lsn` (after Postgres stopped: its pg_wal holds
   * it), retrying until done or the signal aborts.
   */
  async shipUpTo(lsn: bigint, signal: AbortSignal): Promise<void> {
    await this.stop();
    for (;;) {
      signal.throwIfAborted();
      try {
        await this.#shipTo(lsn);
        return;
      } catch (err) {
        if (err instanceof TimelineError && this.#fenced) throw err;
        this.options.onLagging?.(`WAL up to ${formatLsn(lsn)} not shipped yet: ${(err as Error).message}`);
        await delay(this.#backoffMs(), undefined, { signal });
      }
    }
  }

  async #run(): Promise<void> {
    while (this.#running) {
      try {
        const flush = await this.options.flushLsn();
        this.#reportBacklog(flush);
        await this.#shipTo(flush);
        this.#reportBacklog(flush);
        if (this.#failures > 0) this.options.onLagging?.(undefined);
        this.#failures = 0;
      } catch (err) {
        if (this.#fenced || !this.#running) return;
        this.options.onLagging?.(`WAL shipping to timeline ${describeTimeline(this.options.timeline)} is behind at ${formatLsn(this.#shipped)}: ${(err as Error).message}`);
      }
      if (this.#fenced) return;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        setTimeout(resolve, this.#failures > 0 ? this.#backoffMs() : this.options.pollMs).unref();
      });
    }
  }

  #reportBacklog(flush: bigint): void {
    this.options.onBacklog?.(flush > this.#shipped ? flush - this.#shipped : 0n);
  }

  #backoffMs(): number {
    this.#failures += 1;
    return backoffDelayMs({ initialBackoffMs: 2 * this.options.pollMs, maxBackoffMs }, this.#failures);
  }

  async #shipTo(target: bigint): Promise<void> {
    if (target <= this.#shipped) return;
    const { store, timeline, generation } = this.options;
    const successor = await successorOf(store, timeline, generation);
    if (successor) {
      this.#fenced = successor;
      this.options.onFenced(successor);
      throw new TimelineError(timeline, `fenced: generation ${successor.generation} (compute ${successor.computeId}) took over`, Code.FailedPrecondition);
    }
    const segment = BigInt(this.options.segmentBytes);
    while (this.#shipped < target) {
      const from = this.#shipped;
      const segno = from / segment;
      const segmentEnd = (segno + 1n) * segment;
      const to = target < segmentEnd ? target : segmentEnd;
      const bytes = await this.#read(segno, Number(from % segment), Number(to - from));
      await putWalChunk(store, timeline, { startLsn: from, generation, bytes, segmentBytes: this.options.segmentBytes });
      this.#shipped = to;
      await this.options.onShipped?.(to);
    }
  }

  async #read(segno: bigint, offset: number, length: number): Promise<Buffer> {
    const file = path.join(this.options.walDir, walSegmentFileName(this.options.pgTli, segno, this.options.segmentBytes));
    const handle = await open(file, "r");
    try {
      const buffer = Buffer.alloc(length);
      let filled = 0;
      while (filled < length) {
        const { bytesRead } = await handle.read(buffer, filled, length - filled, offset + filled);
        if (bytesRead === 0) throw new Error(`${file} ends before ${length} bytes at offset ${offset}`);
        filled += bytesRead;
      }
      return buffer;
    } finally {
      await handle.close();
    }
  }
}
