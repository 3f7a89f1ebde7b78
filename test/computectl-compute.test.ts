import { readFile } from "node:fs/promises";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
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
