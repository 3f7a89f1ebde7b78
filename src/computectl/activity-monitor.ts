import type pg from "pg";

/** application_name of compute-ctl's own connections; the monitor does not count them as activity. */
export const computeCtlApplicationName = "pgmesh-compute-ctl";

/**
 * Watches pg_stat_activity for client backends (other than compute-ctl's own)
 * and keeps the last time any of them was active: now while one runs a query,
 * else the latest state change. It only moves forward.
 */
export class ActivityMonitor {
  #lastActive: Date | undefined;
  #timer: NodeJS.Timeout | undefined;
  #polling: Promise<void> | undefined;

  constructor(
    private readonly client: pg.Client,
    private readonly intervalMs: number,
    private readonly onChange: (lastActive: Date) => void = () => {},
  ) {}

  get lastActive(): Date | undefined {
    return this.#lastActive;
  }

  start(): void {
    const tick = () => {
      this.#polling = this.poll().catch(() => undefined).then(() => {
        if (this.#polling) this.#timer = setTimeout(tick, this.intervalMs).unref();
      });
    };
    tick();
  }

  /** Reads pg_stat_activity once and moves last_active forward if it saw something newer. */
  async poll(): Promise<Date | undefined> {
    const { rows } = await this.client.query<{ active: string; last_change: Date | null; now: Date }>(
      `SELECT count(*) FILTER (WHERE state IS DISTINCT FROM 'idle') AS active, max(state_change) AS last_change, now() AS now
         FROM pg_catalog.pg_stat_activity
        WHERE backend_type = 'client backend' AND application_name IS DISTINCT FROM $1`,
      [computeCtlApplicationName],
    );
    const row = rows[0]!;
    const seen = Number(row.active) > 0 ? row.now : row.last_change;
    if (seen && (!this.#lastActive || seen > this.#lastActive)) {
      this.#lastActive = seen;
      this.onChange(seen);
    }
    return this.#lastActive;
  }

  async stop(): Promise<void> {
    const polling = this.#polling;
    this.#polling = undefined;
    clearTimeout(this.#timer);
    await polling;
    await this.client.end().catch(() => undefined);
  }
}
