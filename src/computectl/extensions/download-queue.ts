/**
 * How urgently a bundle is wanted: `on_demand` (a session waits for it, or
 * start-up does), `installed` (an extension created in a database, fetched
 * first in the background), `background` (everything else the compute may use).
 */
export type DownloadPriority = "on_demand" | "installed" | "background";

const rank: Record<DownloadPriority, number> = { on_demand: 0, installed: 1, background: 2 };

interface Task {
  readonly key: string;
  priority: DownloadPriority;
  readonly seq: number;
  started: boolean;
  readonly promise: Promise<void>;
  resolve(): void;
  reject(error: unknown): void;
}

/**
 * Runs one job per key at a time: concurrent requests for a key share its
 * job. `on_demand` jobs start at once; the others wait for one of
 * `concurrency` background slots, the more urgent and then the older first;
 * an `on_demand` request for a waiting key takes it out of the queue and
 * starts it. A finished or failed job is forgotten, so a later request runs
 * it again.
 */
export class DownloadQueue {
  private readonly tasks = new Map<string, Task>();
  private waiting: Task[] = [];
  private backgroundRunning = 0;
  private seq = 0;
  private closedWith: ((key: string) => Error) | undefined;

  constructor(
    private readonly concurrency: number,
    private readonly run: (key: string, priority: DownloadPriority) => Promise<void>,
  ) {}

  request(key: string, priority: DownloadPriority): Promise<void> {
    if (this.closedWith !== undefined) return Promise.reject(this.closedWith(key));
    const existing = this.tasks.get(key);
    if (existing !== undefined) {
      if (!existing.started && rank[priority] < rank[existing.priority]) {
        existing.priority = priority;
        if (priority === "on_demand") {
          this.waiting = this.waiting.filter((t) => t !== existing);
          this.start(existing);
        }
      }
      return existing.promise;
    }
    const task = this.newTask(key, priority);
    this.tasks.set(key, task);
    if (priority === "on_demand") {
      this.start(task);
    } else {
      this.waiting.push(task);
      this.pump();
    }
    return task.promise;
  }

  /** Rejects every waiting job with `reason(key)` and refuses new requests; running jobs finish on their own. */
  close(reason: (key: string) => Error): void {
    this.closedWith = reason;
    for (const task of this.waiting) {
      this.tasks.delete(task.key);
      task.reject(reason(task.key));
    }
    this.waiting = [];
  }

  private newTask(key: string, priority: DownloadPriority): Task {
    let resolve!: () => void;
    let reject!: (error: unknown) => void;
    const promise = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    // Every caller awaits the promise; this only keeps an abandoned one from being "unhandled".
    promise.catch(() => undefined);
    this.seq += 1;
    return { key, priority, seq: this.seq, started: false, promise, resolve, reject };
  }

  private pump(): void {
    while (this.backgroundRunning < this.concurrency && this.waiting.length > 0) {
      this.waiting.sort((a, b) => rank[a.priority] - rank[b.priority] || a.seq - b.seq);
      this.start(this.waiting.shift()!);
    }
  }

  private start(task: Task): void {
    task.started = true;
    const usesSlot = task.priority !== "on_demand";
    if (usesSlot) this.backgroundRunning += 1;
    void this.run(task.key, task.priority)
      .then(task.resolve, task.reject)
      .finally(() => {
        this.tasks.delete(task.key);
        if (usesSlot) this.backgroundRunning -= 1;
        this.pump();
      });
  }
}
