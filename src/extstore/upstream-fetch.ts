import type { ExtensionVersion } from "../../gen/pgmesh/extensionstore/v1/extension_store_pb.js";

/**
 * The progress of one upstream fetch into a part file, so readers can stream
 * the bytes while they are still arriving: `written` bytes of the part file
 * are on disk, `info` is known once the upstream sent it, and `settled`
 * says whether the fetch ended (with `failure` when it failed).
 */
export class UpstreamFetch {
  info: ExtensionVersion | undefined;
  /** The part file exists (readers may open it). */
  partCreated = false;
  written = 0;
  private state: "running" | "succeeded" | "failed" = "running";
  private failure: unknown;
  private waiters: { resolve: () => void; reject: (error: unknown) => void }[] = [];
  /** Settles with the fetch; rejects with its failure. */
  readonly finished: Promise<void>;
  private finish!: { resolve: () => void; reject: (error: unknown) => void };

  constructor(
    readonly sha256: string,
    readonly partPath: string,
  ) {
    this.finished = new Promise<void>((resolve, reject) => (this.finish = { resolve, reject }));
    this.finished.catch(() => undefined); // readers see the failure through changed()
  }

  get succeeded(): boolean {
    return this.state === "succeeded";
  }

  /** Records the part file's creation, the info or more bytes, and wakes the readers. */
  advance(update: { partCreated?: true; info?: ExtensionVersion; bytes?: number }): void {
    if (update.partCreated) this.partCreated = true;
    if (update.info !== undefined) this.info = update.info;
    this.written += update.bytes ?? 0;
    this.wake();
  }

  succeed(): void {
    this.state = "succeeded";
    this.finish.resolve();
    this.wake();
  }

  fail(error: unknown): void {
    this.state = "failed";
    this.failure = error;
    this.finish.reject(error);
    for (const waiter of this.waiters.splice(0)) waiter.reject(error);
  }

  /** Throws the failure; else resolves at the next advance or at once when the fetch ended. */
  async changed(): Promise<void> {
    if (this.state === "failed") throw this.failure;
    if (this.state === "succeeded") return;
    await new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  private wake(): void {
    for (const waiter of this.waiters.splice(0)) waiter.resolve();
  }
}
