interface Waiter {
  readonly resolve: (taken: boolean) => void;
  readonly timer: NodeJS.Timeout;
}

/**
 * The one count of live walredo processes, against the --max-processes cap.
 * A slot is taken before a process is spawned and given back only once that
 * process has exited (or its spawn failed with nothing left running), so the
 * count never undercounts a process that still exists. Takers that find no
 * slot free wait in arrival order; a slot given back goes straight to the
 * longest waiter.
 */
export class ProcessSlots {
  private used = 0;
  private readonly waiters: Waiter[] = [];

  constructor(readonly capacity: number) {}

  /** Slots taken: processes starting, running, or killed and not yet reaped. */
  get inUse(): number {
    return this.used;
  }

  /** Takers waiting for a slot. */
  get waiting(): number {
    return this.waiters.length;
  }

  /** Takes a slot if one is free now, without waiting. */
  tryTake(): boolean {
    if (this.used >= this.capacity) return false;
    this.used++;
    return true;
  }

  /**
   * Takes a slot: at once if one is free, else when one is given back.
   * Resolves false if none came within timeoutMs, or on cancelWaiters().
   * The caller is counted in `waiting` as soon as this returns.
   */
  take(timeoutMs: number): Promise<boolean> {
    if (this.tryTake()) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      const waiter: Waiter = {
        resolve,
        timer: setTimeout(() => {
          this.waiters.splice(this.waiters.indexOf(waiter), 1);
          resolve(false);
        }, timeoutMs),
      };
      this.waiters.push(waiter);
    });
  }

  /** Gives a slot back: to the longest waiter, else it is free. */
  release(): void {
    if (this.used === 0) throw new Error("ProcessSlots.release() without a slot taken");
    const next = this.waiters.shift();
    if (!next) {
      this.used--;
      return;
    }
    clearTimeout(next.timer);
    next.resolve(true);
  }

  /** Every waiter gets no slot (the pool is closing). */
  cancelWaiters(): void {
    for (const waiter of this.waiters.splice(0)) {
      clearTimeout(waiter.timer);
      waiter.resolve(false);
    }
  }
}
