import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ActivityMonitor, computeCtlApplicationName } from "../src/computectl/index.js";
import type { RunningPostgres } from "../src/pg/index.js";
import { startScratchPostgres, traversableTempDir } from "./computectl-fixtures.js";

describe("activity monitor", () => {
  let tmp: { dir: string; remove(): Promise<void> };
  let postgres: RunningPostgres;
  let monitor: ActivityMonitor;
  const connect = async (applicationName: string) => {
    const client = new pg.Client({ connectionString: postgres.connectionUri(), application_name: applicationName });
    await client.connect();
    return client;
  };

  beforeAll(async () => {
    tmp = await traversableTempDir("pgmesh-activity-");
    postgres = await startScratchPostgres(tmp.dir);
    monitor = new ActivityMonitor(await connect(computeCtlApplicationName), 60_000);
  });

  afterAll(async () => {
    await monitor?.stop();
    await postgres?.stop("immediate");
    await tmp?.remove();
  });

  it("does not count compute-ctl's own connections", async () => {
    const own = await connect(computeCtlApplicationName);
    await own.query("SELECT 1");
    expect(await monitor.poll()).toBeUndefined();
    await own.end();
  });

  /**
   * Polls the monitor while a query of `app` is active: the query waits on an
   * advisory lock the probe holds, so it stays active however slow the machine.
   */
  async function pollDuringQuery(): Promise<{ seen: Date; now: Date }> {
    const probe = await connect(computeCtlApplicationName);
    await probe.query("SELECT pg_advisory_lock(4242)");
    const busy = await connect("app");
    const running = busy.query("SELECT pg_advisory_lock(4242)");
    try {
      for (;;) {
        const { rows } = await probe.query<{ n: number }>(
          "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'app' AND state = 'active'");
        if (rows[0]!.n === 1) break;
      }
      const now = (await probe.query<{ now: Date }>("SELECT now()")).rows[0]!.now;
      return { seen: (await monitor.poll())!, now };
    } finally {
      await probe.query("SELECT pg_advisory_unlock(4242)");
      await running;
      await busy.end();
      // ...and until its backend is gone, so later polls see only the other clients.
      for (;;) {
        const { rows } = await probe.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'app'");
        if (rows[0]!.n === 0) break;
      }
      await probe.end();
    }
  }

  it("reports now while a client runs a query", async () => {
    const { seen, now } = await pollDuringQuery();
    expect(seen.getTime()).toBeGreaterThanOrEqual(now.getTime());
  });

  it("does not move back to an older idle client's last state change", async () => {
    const idle = await connect("idle-app");
    await idle.query("SELECT 1");
    const { seen } = await pollDuringQuery();
    const probe = await connect(computeCtlApplicationName);
    const { rows } = await probe.query<{ state_change: Date }>(
      "SELECT state_change FROM pg_stat_activity WHERE application_name = 'idle-app'");
    await probe.end();
    expect(rows[0]!.state_change.getTime()).toBeLessThan(seen.getTime());
    expect(await monitor.poll()).toEqual(seen);
    await idle.end();
  });
});
