/**
 * The multi-host drill: every component on its own host with its own address
 * (network namespaces on one bridge), reached by address, never loopback. It
 * starts a compute whose spec lists both replicas of each store, creates an
 * extension on demand, kills a replica, partitions hosts and heals them, and
 * checks that the compute keeps serving and fails over, that a start without
 * Epufs succeeds and says so, that CREATE EXTENSION without a store fails
 * within its timeout and succeeds after healing, and that nothing is left
 * behind. Prints a table of what it did.
 */
import { execa } from "execa";
import { readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import type { DescService } from "@bufbuild/protobuf";
import { createClient, type Client } from "@connectrpc/connect";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ComputeCtlService, ComputeState } from "../gen/pgmesh/computectl/v1/compute_ctl_pb.js";
import { EpufsService } from "../gen/pgmesh/epufs/v1/epufs_pb.js";
import { ExtensionStoreService, ReviewDecision } from "../gen/pgmesh/extensionstore/v1/extension_store_pb.js";
import { WalRedoService } from "../gen/pgmesh/walredo/v1/walredo_pb.js";
import { generateKeyFiles } from "../src/auth/index.js";
import { scramVerifier } from "../src/computectl/index.js";
import { startMeshProcess, type MeshProcess, type MeshProcessOptions } from "../src/demo/index.js";
import { createClientTransport } from "../src/server/index.js";
import { ensureTestBundle } from "./bundle-fixture.js";
import { traversableTempDir } from "./computectl-fixtures.js";
import { publicHeader, publishRequests } from "./fixtures/extstore/extstore-harness.js";
import { packContribBundle } from "./helpers/compute-extensions-fixtures.js";
import { isAlive, processTree } from "./helpers/process-tree.js";
import { startS3rver, type S3rverHandle } from "./helpers/s3rver.js";
import { segmentIdOfLockFile, sysvSegments } from "./helpers/sysv-segments.js";
import { createTestKeys, type TestKeys } from "./helpers/test-keys.js";
import { VirtualNetwork, type VirtualHost } from "./helpers/virtual-network.js";

const ids = { tenant_id: "tenant-drill", timeline_id: "timeline-drill", endpoint_id: "endpoint-drill" };
const pgPort = 5432;
const extensionTimeoutMs = 4000;
/** The extensions the compute's Postgres install lacks: only a download over the network brings them. */
const downloaded = ["hstore", "seg", "cube"];

interface DrillRow {
  readonly step: string;
  readonly outcome: string;
  readonly ms: number;
}

describe("multi-host drill", () => {
  const rows: DrillRow[] = [];
  const network = new VirtualNetwork();
  const hosts = {} as Record<"s3" | "epufsA" | "epufsB" | "storeA" | "storeB" | "walredo" | "compute", VirtualHost>;
  /** The running process of each name (a restart replaces it); every one started, for clean-up after a failure. */
  const processes = new Map<string, MeshProcess>();
  const everyProcess: MeshProcess[] = [];
  /** Every pid the drill started, and their descendants (Postgres, walredo processes): none may outlive it. */
  const pids = new Set<number>();
  /** The SysV segments of every Postgres the compute ran. */
  const segments = new Set<number>();
  let tmp: { dir: string; remove(): Promise<void> };
  let s3: S3rverHandle;
  let keys: TestKeys;
  let storeArgs: string[];
  let remoteExtensionsJson: string;
  let downloadToken: string;
  let computeToken: string;
  let controlToken: string;

  async function step<T>(name: string, work: () => Promise<T>, outcome: (result: T) => string): Promise<T> {
    const started = performance.now();
    const result = await work();
    rows.push({ step: name, outcome: outcome(result), ms: Math.round(performance.now() - started) });
    return result;
  }

  const url = (host: VirtualHost, port: number) => `http://${host.address}:${port}`;

  async function start(name: string, host: VirtualHost, binary: string, port: number, args: readonly string[]): Promise<MeshProcess> {
    const options: MeshProcessOptions = {
      binary,
      cmdDir: path.resolve(import.meta.dirname, "../dist/cmd"),
      url: url(host, port),
      logFile: path.join(tmp.dir, `${name}.log`),
      launcher: host.launcher,
      env: s3.env,
      args: ["--listen", `${host.address}:${port}`, "--auth-keys", keys.jwksPath, ...args],
    };
    const started = await startMeshProcess(options);
    processes.set(name, started);
    everyProcess.push(started);
    pids.add(started.pid);
    return started;
  }

  const client = <S extends DescService>(service: S, host: VirtualHost, port: number, token: string): Client<S> =>
    createClient(service, createClientTransport({ baseUrl: url(host, port), token, defaultTimeoutMs: 10_000 }));

  /** The compute's spec: both replicas of each store, the extensions in `allow` granted. */
  function spec(allow: readonly string[]): string {
    const remote = JSON.parse(remoteExtensionsJson) as {
      public_extensions: string[]; library_index: Record<string, string>; extension_data: Record<string, unknown>;
    };
    remote.public_extensions = remote.public_extensions.filter((e) => allow.includes(e));
    remote.library_index = Object.fromEntries(Object.entries(remote.library_index).filter(([, e]) => allow.includes(e)));
    remote.extension_data = Object.fromEntries(Object.entries(remote.extension_data).filter(([e]) => allow.includes(e)));
    return JSON.stringify({
      format_version: 1.0,
      cluster: {
        roles: [{ name: "alice", encrypted_password: scramVerifier("alice-pw"), options: null }],
        databases: [{ name: "app", owner: "alice", options: null }],
      },
      ...ids,
      remote_extensions: remote,
      endpoint_storage_addr: `${hosts.epufsA.address}:7102,${hosts.epufsB.address}:7102`,
      endpoint_storage_token: computeToken,
      pgmesh: {
        base_data: { source: "initdb" },
        extension_store: { addr: `${hosts.storeA.address}:7101,${hosts.storeB.address}:7101`, download_token: downloadToken },
        port: pgPort,
      },
    });
  }

  /** Starts compute-ctl on the compute host with a spec; resolves once the compute runs. */
  async function startCompute(specText: string): Promise<{ ctl: Client<typeof ComputeCtlService>; error: string }> {
    const specFile = path.join(tmp.dir, "spec.json");
    await writeFile(specFile, specText);
    await start("compute-ctl", hosts.compute, "compute-ctl", 7103, [
      "--pgdata", path.join(tmp.dir, "compute", "pgdata"), "--spec", specFile,
      "--pgbin", path.join(tmp.dir, "install", "bin", "postgres"),
      "--pg-listen", hosts.compute.address, "--extension-timeout-ms", String(extensionTimeoutMs),
    ]);
    const ctl = client(ComputeCtlService, hosts.compute, 7103, controlToken);
    for await (const { status } of ctl.watchStatus({}, { timeoutMs: 60_000 })) {
      if (status?.state === ComputeState.RUNNING) {
        const lockFile = await readFile(path.join(tmp.dir, "compute", "pgdata", "postmaster.pid"), "utf8");
        segments.add(segmentIdOfLockFile(lockFile));
        for (const pid of await processTree(processes.get("compute-ctl")!.pid)) pids.add(pid);
        return { ctl, error: status.error };
      }
      if (status?.state === ComputeState.FAILED) throw new Error(`the compute failed: ${status.error}`);
    }
    throw new Error("compute-ctl ended its status stream before the compute ran");
  }

  async function asAlice<T>(work: (db: pg.Client) => Promise<T>): Promise<T> {
    const db = new pg.Client({ host: hosts.compute.address, port: pgPort, user: "alice", password: "alice-pw", database: "app" });
    await db.connect();
    try {
      return await work(db);
    } finally {
      await db.end();
    }
  }

  const serving = () => asAlice(async (db) => (await db.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_extension")).rows[0]!.n);

  beforeAll(async () => {
    tmp = await traversableTempDir("pgmesh-drill-");
    await step("bring up 7 hosts", async () => {
      for (const name of ["s3", "epufsA", "epufsB", "storeA", "storeB", "walredo", "compute"] as const) {
        hosts[name] = await network.addHost(name);
      }
      keys = await createTestKeys();
      const signing = await generateKeyFiles(path.join(tmp.dir, "download-keys"));
      s3 = await startS3rver("pgmesh-drill", { host: hosts.s3.address, launcher: hosts.s3.launcher });
      storeArgs = ["--storage", s3.url("extensions"), "--signing-key", signing.privateKeyPath, "--spool-dir", tmp.dir];
      const bundle = await ensureTestBundle();
      await Promise.all([
        start("epufs-a", hosts.epufsA, "epufs", 7102, ["--storage", s3.url("epufs")]),
        start("epufs-b", hosts.epufsB, "epufs", 7102, ["--storage", s3.url("epufs")]),
        start("store-a", hosts.storeA, "extension-store", 7101, storeArgs),
        start("store-b", hosts.storeB, "extension-store", 7101, storeArgs),
        start("walredo", hosts.walredo, "walredo", 7104, ["--bundle", bundle, "--scratch-root", tmp.dir]),
      ]);
      // The compute's own Postgres install: the bundle without the extensions it has to download.
      const install = path.join(tmp.dir, "install");
      await execa("cp", ["-al", path.join(bundle, "v15"), install]);
      await execa("sh", ["-c", `rm -f ${downloaded.map((e) => `usr/share/postgresql/15/extension/${e}[.-]* usr/lib/postgresql/15/lib/${e}.so`).join(" ")}`], { cwd: install });

      const admin = client(ExtensionStoreService, hosts.storeA, 7101, await keys.mint({ scope: "admin" }));
      for (const name of downloaded) {
        const packed = await packContribBundle(name);
        await admin.publishExtension(publishRequests(publicHeader(name), packed.tar));
        await admin.reviewExtension({ name, sha256: packed.sha256, decision: ReviewDecision.APPROVE });
      }
      controlToken = await keys.mint({ scope: "control_plane" });
      computeToken = await keys.computeToken(ids.tenant_id, ids.timeline_id, ids.endpoint_id);
      // The other replica answers from the same bucket, and signs with the same key.
      const controlPlane = client(ExtensionStoreService, hosts.storeB, 7101, controlToken);
      ({ remoteExtensionsJson } = await controlPlane.exportRemoteExtensions({ tenantId: ids.tenant_id, pgMajor: 15 }));
      const data = Object.values((JSON.parse(remoteExtensionsJson) as { extension_data: Record<string, { sha256: string }> }).extension_data);
      ({ token: downloadToken } = await controlPlane.issueDownloadToken({
        tenantId: ids.tenant_id, endpointId: ids.endpoint_id, sha256: data.map((d) => d.sha256),
      }));
    }, () => network.hosts.map((h) => `${h.name} ${h.address}`).join(", "));
  });

  afterAll(async () => {
    for (const host of network.hosts) await host.reconnect().catch(() => undefined);
    for (const process of everyProcess.reverse()) await process.kill("SIGKILL");
    await s3?.stop();
    await network.remove();
    await keys?.remove();
    await tmp?.remove();
    const width = Math.max(...rows.map((r) => r.step.length));
    console.log(["multi-host drill:", ...rows.map((r) => `  ${r.step.padEnd(width)}  ${String(r.ms).padStart(6)} ms  ${r.outcome}`)].join("\n"));
  });

  it("starts a compute whose Postgres and compute-ctl serve on its own address", async () => {
    const { error } = await step("start compute", () => startCompute(spec(["hstore"])), () => "running");
    expect(error).toBe("");
    expect(await serving()).toBe(1); // plpgsql
  });

  it("creates an extension on demand, downloaded from the store on another host", async () => {
    const value = await step("CREATE EXTENSION hstore", () => asAlice(async (db) => {
      await db.query("CREATE EXTENSION hstore");
      return (await db.query<{ v: string }>("SELECT ('a=>1'::hstore) -> 'a' AS v")).rows[0]!.v;
    }), (v) => `hstore works (a=>1 -> ${v})`);
    expect(value).toBe("1");
  });

  it("keeps serving when a store replica is killed, and downloads from the other", async () => {
    await step("kill store-a (SIGKILL)", () => processes.get("store-a")!.kill("SIGKILL"), () => "killed");
    const extensions = await step("query the compute", serving, (n) => `serving, ${n} extensions`);
    expect(extensions).toBe(2);
    const ctl = client(ComputeCtlService, hosts.compute, 7103, controlToken);
    await step("grant seg", () => ctl.configure({ specJson: spec(["hstore", "seg"]) }), () => "configured");
    const value = await step("CREATE EXTENSION seg", () => asAlice(async (db) => {
      await db.query("CREATE EXTENSION seg");
      return (await db.query<{ v: string }>("SELECT '1 .. 2'::seg::text AS v")).rows[0]!.v;
    }), (v) => `seg works (${v}), from store-b`);
    expect(value).toBe("1 .. 2");
  });

  it("fails CREATE EXTENSION within its timeout while no store is reachable, and leaves the session usable", async () => {
    const ctl = client(ComputeCtlService, hosts.compute, 7103, controlToken);
    await step("partition store-b (link down)", () => hosts.storeB.disconnect(), () => "no store reachable");
    await step("grant cube", () => ctl.configure({ specJson: spec(downloaded) }), () => "configured");
    const started = performance.now();
    const outcome = await step("CREATE EXTENSION cube", () => asAlice(async (db) => {
      const error = await db.query("CREATE EXTENSION cube").then(() => undefined, (err: Error) => err);
      const stillServing = (await db.query<{ one: number }>("SELECT 1 AS one")).rows[0]!.one === 1;
      return { error, stillServing };
    }), ({ error }) => `failed: ${error?.message ?? "(no error)"}`);
    const elapsedMs = performance.now() - started;
    expect(outcome.error?.message).toMatch(/cube/);
    expect(outcome.stillServing).toBe(true);
    expect(elapsedMs).toBeLessThan(extensionTimeoutMs + 3000);
  });

  it("creates the extension once the store's host is back", async () => {
    await step("heal store-b (link up)", () => hosts.storeB.reconnect(), () => "reachable");
    const value = await step("CREATE EXTENSION cube", () => asAlice(async (db) => {
      await db.query("SET pgmesh.extension_timeout_ms = 60000"); // the first download's retry waits out its backoff
      await db.query("CREATE EXTENSION cube");
      return (await db.query<{ v: string }>("SELECT cube(1, 2)::text AS v")).rows[0]!.v;
    }), (v) => `cube works (${v})`);
    expect(value).toBe("(1),(2)");
  });

  it("serves the same catalog from a restarted replica", async () => {
    const restarted = await step("restart store-a", async () => {
      await start("store-a", hosts.storeA, "extension-store", 7101, storeArgs);
      const store = client(ExtensionStoreService, hosts.storeA, 7101, controlToken);
      return (await store.exportRemoteExtensions({ tenantId: ids.tenant_id, pgMajor: 15 })).remoteExtensionsJson;
    }, () => "serving, same catalog");
    expect(JSON.parse(restarted)).toEqual(JSON.parse(remoteExtensionsJson));
  });

  it("saves the endpoint's files on stop, readable through either Epufs replica", async () => {
    const code = await step("stop compute (SIGTERM)", () => processes.get("compute-ctl")!.stop(), (c) => `exit ${c}, files saved`);
    expect(code).toBe(0);
    const epufs = client(EpufsService, hosts.epufsB, 7102, computeToken);
    const endpoint = { tenantId: ids.tenant_id, timelineId: ids.timeline_id, endpointId: ids.endpoint_id };
    const { files } = await step("list files via epufs-b", () => epufs.listFiles({ endpoint }), (r) => `${r.files.length} files`);
    expect(files.map((f) => f.path)).toContain("pg_stat/pg_stat_statements.stat");
  });

  it("starts a compute with its saved files while one Epufs replica's host is partitioned", async () => {
    await step("partition epufs-a (link down)", () => hosts.epufsA.disconnect(), () => "epufs-b reachable");
    const { error } = await step("start compute", () => startCompute(spec(downloaded)), (r) => `running${r.error ? `; ${r.error}` : ", saved files from epufs-b"}`);
    expect(error).toBe("");
    const code = await step("stop compute (SIGTERM)", () => processes.get("compute-ctl")!.stop(), (c) => `exit ${c}`);
    expect(code).toBe(0);
  });

  it("starts a compute while Epufs is unreachable, and says so", async () => {
    await step("partition epufs-b too", () => hosts.epufsB.disconnect(), () => "no Epufs reachable");
    const { error } = await step("start compute", () => startCompute(spec(downloaded)), (r) => `running; ${r.error}`);
    expect(error).toMatch(/^endpoint storage unavailable .*; started without saved files/);
    expect(await serving()).toBeGreaterThanOrEqual(1);
  });

  it("runs walredo on its own host", async () => {
    const walredo = client(WalRedoService, hosts.walredo, 7104, controlToken);
    const { roundTripUs } = await step("walredo Ping", () => walredo.ping({ tenantId: ids.tenant_id, pgMajor: 15 }), (r) => `${r.roundTripUs} µs round trip`);
    expect(roundTripUs).toBeGreaterThan(0n);
    for (const pid of await processTree(processes.get("walredo")!.pid)) pids.add(pid);
  });

  it("leaves no process and no shared memory segment behind", async () => {
    await step("heal, stop every service", async () => {
      await hosts.epufsA.reconnect();
      await hosts.epufsB.reconnect();
      for (const process of [...processes.values()].reverse()) expect(await process.stop()).toBe(0);
    }, () => "all exited 0");
    const left = await step("check for leftovers", async () => {
      const live = [...pids].filter(isAlive);
      const leftSegments = (await sysvSegments()).filter((s) => segments.has(s.id) || pids.has(s.creatorPid));
      const { stdout } = await execa("pgrep", ["-f", tmp.dir], { reject: false });
      return { live, leftSegments, named: stdout.trim() };
    }, (r) => `${r.live.length} processes, ${r.leftSegments.length} segments (${pids.size} pids, ${segments.size} Postgres segments watched)`);
    expect(left).toEqual({ live: [], leftSegments: [], named: "" });
    await rm(path.join(tmp.dir, "compute"), { recursive: true, force: true });
  });
});
