import { access, readFile } from "node:fs/promises";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { scramVerifier, type Compute } from "../src/computectl/index.js";
import { newCompute, spec, traversableTempDir } from "./computectl-fixtures.js";

describe("Compute start-up from an initdb spec", () => {
  let tmp: { dir: string; remove(): Promise<void> };
  let compute: Compute;

  beforeAll(async () => {
    tmp = await traversableTempDir("pgmesh-compute-");
    compute = newCompute(tmp.dir, { templateRoot: path.join(tmp.dir, "templates") });
    compute.begin("127.0.0.1:1");
  });

  afterAll(async () => {
    await compute.shutdown();
    await tmp.remove();
  });

  it("lays down a PGDATA from the initdb template while it waits for a spec", async () => {
    expect(compute.state.state).toBe("configuration_pending");
    // Nothing to await from outside: the copy runs in the background until the spec arrives.
    await vi.waitFor(() => access(path.join(compute.options.pgdata, "global", "pg_control")), { timeout: 60_000, interval: 50 });
  });

  it("waits in configuration_pending until a spec arrives, then runs", async () => {
    expect(compute.state.state).toBe("configuration_pending");
    const accepted = await compute.configure(spec({
      cluster: {
        roles: [{ name: "alice", encrypted_password: scramVerifier("secret"), options: null }],
        databases: [{ name: "app", owner: "alice", options: null }],
        settings: [{ name: "work_mem", value: "8MB", vartype: "string" }],
      },
    }));
    expect(accepted.state).toBe("init");
    const running = await compute.waitUntilRunning();
    expect(running.state).toBe("running");
    expect(running.timings.totalMs).toBeGreaterThan(0);
    expect(running.timings.startPostgresMs).toBeGreaterThan(0);
  });

  it("lets a spec role log in with its password to its database", async () => {
    const uri = new URL(compute.status().connectionUri);
    const client = new pg.Client({ host: uri.hostname, port: Number(uri.port), user: "alice", password: "secret", database: "app" });
    await client.connect();
    const { rows } = await client.query("select current_user, current_database(), current_setting('work_mem') as work_mem");
    await client.end();
    expect(rows[0]).toEqual({ current_user: "alice", current_database: "app", work_mem: "8MB" });
  });

  it("writes pgmesh's settings after the spec's managed block", async () => {
    const conf = await readFile(path.join(compute.options.pgdata, "postgresql.conf"), "utf8");
    expect(conf.indexOf("work_mem = '8MB'")).toBeLessThan(conf.indexOf("shared_preload_libraries = 'pg_stat_statements'"));
    expect(conf).toContain("pg_stat_statements.save = 'on'");
  });
});

describe("Compute failures", () => {
  let tmp: { dir: string; remove(): Promise<void> };
  const computes: Compute[] = [];

  beforeAll(async () => {
    tmp = await traversableTempDir("pgmesh-compute-fail-");
  });

  afterAll(async () => {
    for (const c of computes) await c.shutdown();
    await tmp.remove();
  });

  const start = (name: string, extra: Record<string, unknown> = {}) => {
    const compute = newCompute(path.join(tmp.dir, name), { templateRoot: path.join(tmp.dir, "templates") });
    computes.push(compute);
    compute.begin("127.0.0.1:1");
    return compute.configure(spec(extra)).then(() => compute);
  };

  it("goes to failed with the exit status and log tail when Postgres dies while running", async () => {
    const compute = await start("crash");
    await compute.waitUntilRunning();
    const failed = compute.state.waitFor((s) => s.state === "failed");
    process.kill(compute.postgres!.pid, "SIGKILL");
    const { error } = await failed;
    expect(error).toMatch(/^postgres exited unexpectedly \(code null, signal SIGKILL\); log tail:\n/);
    expect(error).toContain("database system is ready to accept connections");
  });

  it("fails with Postgres's own complaint when a spec setting stops it from starting", async () => {
    const compute = await start("bad-setting", { cluster: { settings: [{ name: "shared_buffers", value: "lots", vartype: "string" }] } });
    await expect(compute.waitUntilRunning()).rejects.toThrow(/postgres exited during start-up[\s\S]*shared_buffers/);
    expect(compute.state.state).toBe("failed");
  });

  it("fails and stops its Postgres when roles cannot be reconciled", async () => {
    const compute = await start("read-only", {
      cluster: { roles: [{ name: "alice" }], settings: [{ name: "default_transaction_read_only", value: "on", vartype: "bool" }] },
    });
    await expect(compute.waitUntilRunning()).rejects.toThrow(/cannot execute CREATE ROLE in a read-only transaction/);
    await compute.state.waitFor((s) => s.state === "failed");
    await compute.postgres!.exited;
    expect(compute.postgres!.hasExited).toBe(true);
  });

  it("leaves roles and databases alone with skip_pg_catalog_updates", async () => {
    const compute = await start("skip-catalog", {
      skip_pg_catalog_updates: true,
      cluster: { roles: [{ name: "alice" }], databases: [{ name: "app", owner: "alice" }] },
    });
    const status = await compute.waitUntilRunning();
    expect(status.timings.configMs).toBeLessThan(status.timings.totalMs);
    expect((await compute.roles()).map((r) => r.name)).toEqual(["cloud_admin"]);
    expect((await compute.databases()).map((d) => d.name)).toEqual(["postgres"]);
  });

  it("still starts when Epufs is down, and says so in the status", async () => {
    const compute = await start("epufs-down", { endpoint_storage_addr: "127.0.0.1:1", endpoint_storage_token: "x" });
    const status = await compute.waitUntilRunning();
    expect(status.error).toMatch(/^endpoint storage unavailable at 127\.0\.0\.1:1; started without saved files \(/);
  });

  it("terminates with an immediate shutdown and reports terminated", async () => {
    const compute = await start("immediate");
    await compute.waitUntilRunning();
    const postgres = compute.postgres!;
    const status = await compute.terminate("immediate");
    expect(status.state).toBe("terminated");
    expect(postgres.hasExited).toBe(true);
    expect(await postgres.logTail()).toContain("received immediate shutdown request");
  });
});
