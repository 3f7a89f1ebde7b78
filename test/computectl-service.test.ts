import path from "node:path";
import { timestampMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { ComputeCtlService, ComputeState, TerminateMode, type ComputeStatus } from "../gen/pgmesh/computectl/v1/compute_ctl_pb.js";
import { runComputeCtl, scramVerifier, type ComputeCtlHandle } from "../src/computectl/index.js";
import { systemPgBinaries } from "../src/pg/index.js";
import { createClientTransport } from "../src/server/index.js";
import { createTestKeys, type TestKeys } from "./helpers/test-keys.js";
import { silentLogger, specJson, traversableTempDir } from "./computectl-fixtures.js";

const protoDir = path.resolve(import.meta.dirname, "../proto");

function codeOf(err: unknown): Code | undefined {
  return err instanceof ConnectError ? err.code : undefined;
}

async function rejection(promise: Promise<unknown>): Promise<ConnectError> {
  try {
    await promise;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("the call succeeded");
}

describe("ComputeCtl service", () => {
  let tmp: { dir: string; remove(): Promise<void> };
  let keys: TestKeys;
  let handle: ComputeCtlHandle;
  let ctl: Client<typeof ComputeCtlService>;
  const spec = specJson({
    cluster: {
      roles: [{ name: "alice", encrypted_password: scramVerifier("pw"), options: null }],
      databases: [{ name: "app", owner: "alice", options: null }],
      settings: [],
    },
  });

  beforeAll(async () => {
    tmp = await traversableTempDir("pgmesh-ctl-service-");
    keys = await createTestKeys();
    handle = await runComputeCtl({
      pgdata: path.join(tmp.dir, "pgdata"),
      binaries: systemPgBinaries(15),
      templateRoot: path.join(tmp.dir, "templates"),
      activityPollMs: 20,
      port: 0,
      auth: { verifier: keys.verifier },
      logger: silentLogger,
    });
    ctl = createClient(ComputeCtlService, createClientTransport({ baseUrl: handle.url, token: await keys.mint({ scope: "control_plane" }) }));
  });

  /**
   * A WatchStatus stream once the server has sent the current state: only then
   * is the watch subscribed, so a call made after this cannot overtake it
   * (the server verifies the two calls' tokens concurrently).
   */
  async function watchFromNow(): Promise<{ first: ComputeStatus; rest: AsyncIterable<{ status?: ComputeStatus }> }> {
    const iterator = ctl.watchStatus({})[Symbol.asyncIterator]();
    const first = await iterator.next();
    if (first.done) throw new Error("the status stream ended before its first message");
    return { first: first.value.status!, rest: { [Symbol.asyncIterator]: () => iterator } };
  }

  afterAll(async () => {
    await handle?.close();
    await keys?.remove();
    await tmp?.remove();
  });

  it("answers UNAUTHENTICATED without a token", async () => {
    const anonymous = createClient(ComputeCtlService, createClientTransport({ baseUrl: handle.url }));
    expect(codeOf(await rejection(anonymous.getStatus({})))).toBe(Code.Unauthenticated);
  });

  it("refuses a compute token with PERMISSION_DENIED", async () => {
    const token = await keys.computeToken("t1", "tl1", "ep1");
    const compute = createClient(ComputeCtlService, createClientTransport({ baseUrl: handle.url, token }));
    const err = await rejection(compute.configure({ specJson: JSON.stringify(spec) }));
    expect(err.code).toBe(Code.PermissionDenied);
    expect(err.rawMessage).toMatch(/needs scope control_plane/);
  });

  it("waits in configuration_pending without a spec (seen by an independent grpc-js client)", async () => {
    const definition = protoLoader.loadSync(["pgmesh/computectl/v1/compute_ctl.proto"], { includeDirs: [protoDir], enums: String, keepCase: true });
    const loaded = grpc.loadPackageDefinition(definition) as unknown as {
      pgmesh: { computectl: { v1: { ComputeCtlService: grpc.ServiceClientConstructor } } };
    };
    const client = new loaded.pgmesh.computectl.v1.ComputeCtlService(`127.0.0.1:${handle.server.address.port}`, grpc.credentials.createInsecure());
    const metadata = new grpc.Metadata();
    metadata.set("authorization", `Bearer ${await keys.mint({ scope: "admin" })}`);
    try {
      const res = await new Promise<{ status: { state: string; state_name: string } }>((resolve, reject) =>
        (client as unknown as { GetStatus: (r: object, m: grpc.Metadata, cb: (e: Error | null, v: never) => void) => void })
          .GetStatus({}, metadata, (err, value) => (err ? reject(err) : resolve(value))));
      expect(res.status).toMatchObject({ state: "COMPUTE_STATE_CONFIGURATION_PENDING", state_name: "configuration_pending" });
    } finally {
      client.close();
    }
  });

  it("refuses Terminate before the compute runs with FAILED_PRECONDITION", async () => {
    const err = await rejection(ctl.terminate({ mode: TerminateMode.FAST }));
    expect(err.code).toBe(Code.FailedPrecondition);
    expect(err.rawMessage).toBe("cannot terminate a compute in state configuration_pending");
  });

  it("refuses a bad spec with INVALID_ARGUMENT naming the field, and keeps waiting", async () => {
    const bad = { ...spec, cluster: { roles: [{ name: "ok" }, { name: "ok2" }, { name: "" }] } };
    const err = await rejection(ctl.configure({ specJson: JSON.stringify(bad) }));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toContain("cluster.roles[2].name: must be a non-empty string");
    expect((await ctl.getStatus({})).status?.stateName).toBe("configuration_pending");
  });

  it("starts from Configure and streams every state change until running", async () => {
    const watch = await watchFromNow();
    const seen: string[] = [watch.first.stateName];
    const untilRunning = (async () => {
      for await (const { status } of watch.rest) {
        seen.push(status!.stateName);
        if (status!.state === ComputeState.RUNNING || status!.state === ComputeState.FAILED) return status!;
      }
      throw new Error("the stream ended before running");
    })();
    const accepted = await ctl.configure({ specJson: JSON.stringify(spec) });
    expect(accepted.status?.stateName).toBe("init");
    const running = await untilRunning;
    expect(running.error).toBe("");
    expect(seen).toEqual(["configuration_pending", "init", "running"]);
    expect(running.connectionUri).toMatch(/^postgresql:\/\/cloud_admin@127\.0\.0\.1:\d+\/postgres$/);
    expect(running.startupMetrics!.totalMs).toBeGreaterThan(0n);
  });

  it("refuses a spec that changes endpoint_id while running", async () => {
    const err = await rejection(ctl.configure({ specJson: JSON.stringify({ ...spec, endpoint_id: "other" }) }));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toContain("endpoint_id: cannot change while the compute runs");
  });

  it("lists the spec's roles and databases", async () => {
    const { roles } = await ctl.listRoles({});
    expect(roles.map((r) => [r.name, r.canLogin, r.superuser])).toEqual([["alice", true, false], ["cloud_admin", true, true]]);
    const { databases } = await ctl.listDatabases({});
    expect(databases.map((d) => [d.name, d.owner])).toEqual([["app", "alice"], ["postgres", "cloud_admin"]]);
  });

  it("reconfigures while running, applying the new database", async () => {
    const next = { ...spec, cluster: { ...(spec.cluster as object), databases: [{ name: "app", owner: "alice" }, { name: "reports", owner: "alice" }] } };
    const res = await ctl.configure({ specJson: JSON.stringify(next) });
    expect(res.status?.stateName).toBe("running");
    expect((await ctl.listDatabases({})).databases.map((d) => d.name)).toEqual(["app", "postgres", "reports"]);
  });

  it("reloads changed settings while running, without a restart, and says which need one", async () => {
    const pid = handle.compute.postgres!.pid;
    const next = { ...spec, cluster: { ...(spec.cluster as object), databases: [{ name: "app", owner: "alice" }, { name: "reports", owner: "alice" }],
      settings: [{ name: "work_mem", value: "12MB", vartype: "string" }, { name: "shared_buffers", value: "64MB", vartype: "string" }] } };
    const res = await ctl.configure({ specJson: JSON.stringify(next) });
    expect(res.status?.stateName).toBe("running");
    expect(res.status?.error).toBe("shared_buffers changed but take effect only at the next start (Postgres must restart)");
    // pg_reload_conf() signals the postmaster; new sessions see the value once it has re-read the file.
    await vi.waitFor(async () => {
      const client = new pg.Client({ connectionString: handle.compute.status().connectionUri });
      await client.connect();
      const { rows } = await client.query("SHOW work_mem");
      await client.end();
      expect(rows[0].work_mem).toBe("12MB");
    }, { timeout: 30_000, interval: 50 });
    expect(handle.compute.postgres!.pid).toBe(pid);
  });

  it("reports start-up phases through GetStartupMetrics and /metrics", async () => {
    const { metrics } = await ctl.getStartupMetrics({});
    expect(metrics!.startPostgresMs).toBeGreaterThan(0n);
    expect(metrics!.totalMs).toBeGreaterThanOrEqual(metrics!.startPostgresMs);
    const text = await (await fetch(`${handle.url}/metrics`)).text();
    expect(text).toContain(`pgmesh_compute_startup_phase_ms{phase="start_postgres"} ${metrics!.startPostgresMs}`);
    expect(text).toContain('pgmesh_compute_state{state="running"} 1');
  });

  it("reports last_active in the status, moving forward with client activity", async () => {
    const msOf = (t: Timestamp | undefined) => (t ? timestampMs(t) : 0);
    const before = msOf((await ctl.getStatus({})).status!.lastActiveTime);
    const client = new pg.Client({ connectionString: handle.compute.status().connectionUri.replace("/postgres", "/app") });
    await client.connect();
    try {
      await client.query("SELECT pg_sleep(0.1)");
      // Connected until the monitor has looked: a backend that is gone leaves no trace in pg_stat_activity.
      await vi.waitFor(async () => {
        expect(msOf((await ctl.getStatus({})).status!.lastActiveTime)).toBeGreaterThan(before);
      }, { timeout: 30_000, interval: 20 });
    } finally {
      await client.end();
    }
  });

  it("shows pg_stat_statements insights", async () => {
    const client = new pg.Client({ connectionString: handle.compute.status().connectionUri });
    await client.connect();
    await client.query("SELECT count(*) FROM pg_class WHERE relname = 'pgmesh_insight_probe'");
    await client.end();
    const { statements } = await ctl.getInsights({ limit: 100 });
    const probe = statements.find((s) => s.query.includes("pgmesh_insight_probe") || s.query.includes("relname = $1"));
    expect(probe).toMatchObject({ calls: 1n, database: "postgres", role: "cloud_admin" });
  });

  it("terminates fast, reports terminated and ends status streams", async () => {
    const watch = await watchFromNow();
    const states = (async () => {
      const seen: string[] = [watch.first.stateName];
      for await (const { status } of watch.rest) seen.push(status!.stateName);
      return seen;
    })();
    const postgres = handle.compute.postgres!;
    const res = await ctl.terminate({ mode: TerminateMode.FAST });
    expect(res.status?.stateName).toBe("terminated");
    expect(postgres.hasExited).toBe(true);
    expect(await states).toEqual(["running", "termination_pending_fast", "terminated"]);
    expect(codeOf(await rejection(ctl.configure({ specJson: JSON.stringify(spec) })))).toBe(Code.FailedPrecondition);
  });
});
