import { access, copyFile } from "node:fs/promises";
import path from "node:path";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ComputeCtlService, TerminateMode } from "../gen/pgmesh/computectl/v1/compute_ctl_pb.js";
import { EpufsService } from "../gen/pgmesh/epufs/v1/epufs_pb.js";
import { openBlobStore } from "../src/blob/index.js";
import { RemoteExtensionLoader, runComputeCtl, scramVerifier, type ComputeCtlHandle } from "../src/computectl/index.js";
import { compileEpufsOptions, Epufs, epufsServerParts } from "../src/epufs/index.js";
import { createClientTransport, startServer, type ServerHandle } from "../src/server/index.js";
import {
  buildComputeHookInto,
  createScratchInstall,
  packContribBundle,
  startTestExtensionStore,
  type ScratchInstall,
  type TestExtensionStore,
} from "./helpers/compute-extensions-fixtures.js";
import { createTestKeys, type TestKeys } from "./helpers/test-keys.js";
import { silentLogger, traversableTempDir } from "./computectl-fixtures.js";

const ids = { tenant_id: "tenant-e2e", timeline_id: "timeline-e2e", endpoint_id: "endpoint-e2e" };
const endpoint = { tenantId: ids.tenant_id, timelineId: ids.timeline_id, endpointId: ids.endpoint_id };

describe("compute end to end", () => {
  let tmp: { dir: string; remove(): Promise<void> };
  let install: ScratchInstall;
  let store: TestExtensionStore;
  let epufsKeys: TestKeys;
  let epufsServer: ServerHandle;
  let epufs: Client<typeof EpufsService>;
  let specText: string;
  const handles: ComputeCtlHandle[] = [];
  const marker = "pgmesh_e2e_marker";

  beforeAll(async () => {
    tmp = await traversableTempDir("pgmesh-e2e-");
    // A private copy of Postgres without hstore, with the compute hook: only a download can bring hstore.
    install = await createScratchInstall(["hstore", "cube"]);
    await copyFile("/usr/lib/postgresql/15/bin/initdb", path.join(install.binaries.binDir, "initdb"));
    await buildComputeHookInto(install);

    store = await startTestExtensionStore();
    await store.publishApproved(await packContribBundle("hstore"));
    await store.publishApproved(await packContribBundle("cube"));
    const { controlPlane } = store.harness;
    const { remoteExtensionsJson } = await controlPlane.exportRemoteExtensions({ tenantId: ids.tenant_id, pgMajor: 15 });
    const remote = JSON.parse(remoteExtensionsJson) as { extension_data: Record<string, { sha256: string }> };
    const { token: downloadToken } = await controlPlane.issueDownloadToken({
      tenantId: ids.tenant_id, endpointId: ids.endpoint_id, sha256: Object.values(remote.extension_data).map((d) => d.sha256),
    });

    epufsKeys = await createTestKeys();
    const auth = { verifier: epufsKeys.verifier };
    const service = new Epufs(await openBlobStore(`file://${path.join(tmp.dir, "epufs")}`), compileEpufsOptions());
    epufsServer = await startServer({ port: 0, auth, logger: silentLogger, ...epufsServerParts(service, auth) });
    const computeToken = await epufsKeys.computeToken(ids.tenant_id, ids.timeline_id, ids.endpoint_id);
    epufs = createClient(EpufsService, createClientTransport({ baseUrl: epufsServer.url, token: computeToken }));

    specText = JSON.stringify({
      format_version: 1.0,
      cluster: {
        roles: [{ name: "alice", encrypted_password: scramVerifier("alice-pw"), options: null }],
        databases: [{ name: "app", owner: "alice", options: null }],
        settings: [{ name: "pg_stat_statements.track", value: "all", vartype: "enum" }],
      },
      ...ids,
      remote_extensions: JSON.parse(remoteExtensionsJson),
      endpoint_storage_addr: `127.0.0.1:${epufsServer.address.port}`,
      endpoint_storage_token: computeToken,
      pgmesh: { base_data: { source: "initdb" }, extension_store: { addr: store.addr, download_token: downloadToken } },
    });
  });

  afterAll(async () => {
    for (const handle of handles) await handle.close();
    await epufsServer?.close();
    await epufsKeys?.remove();
    await store?.stop();
    await install?.remove();
    await tmp?.remove();
  });

  /** The spec without `name` in remote_extensions: what a control plane sends before granting it. */
  function specWithout(name: string): string {
    const spec = JSON.parse(specText) as { remote_extensions: Record<string, unknown> & { extension_data: Record<string, unknown> } };
    const remote = spec.remote_extensions as { public_extensions: string[]; library_index: Record<string, string>; extension_data: Record<string, unknown> };
    remote.public_extensions = remote.public_extensions.filter((e) => e !== name);
    remote.library_index = Object.fromEntries(Object.entries(remote.library_index).filter(([, e]) => e !== name));
    delete remote.extension_data[name];
    return JSON.stringify(spec);
  }

  // Computes start without cube (so no background download brings it); one test grants it by a reconfigure.
  interface RunningCompute {
    readonly handle: ComputeCtlHandle;
    readonly ctl: Client<typeof ComputeCtlService>;
    /** Lets background downloads finish (the in-process ExtensionStore is not to be cut off mid-stream), then closes. */
    stop(): Promise<void>;
  }

  async function startCompute(spec = specWithout("cube")): Promise<RunningCompute> {
    const loader = new RemoteExtensionLoader({ binaries: install.binaries, dirs: install.dirs, logger: silentLogger });
    const handle = await runComputeCtl({
      pgdata: path.join(tmp.dir, "compute", "pgdata"),
      binaries: install.binaries,
      templateRoot: path.join(tmp.dir, "templates"),
      port: 0,
      auth: { insecure: true },
      logger: silentLogger,
      extensions: loader,
    });
    handles.push(handle);
    const ctl = createClient(ComputeCtlService, createClientTransport({ baseUrl: handle.url }));
    await ctl.configure({ specJson: spec });
    await handle.compute.waitUntilRunning();
    return {
      handle,
      ctl,
      stop: async () => {
        await loader.backgroundDone();
        await handle.close();
      },
    };
  }

  async function asAlice<T>(handle: ComputeCtlHandle, work: (client: pg.Client) => Promise<T>): Promise<T> {
    const uri = new URL(handle.compute.status().connectionUri);
    const client = new pg.Client({ host: uri.hostname, port: Number(uri.port), user: "alice", password: "alice-pw", database: "app" });
    await client.connect();
    try {
      return await work(client);
    } finally {
      await client.end();
    }
  }

  it("downloads an extension on CREATE EXTENSION, runs queries, and restores pg_stat_statements on the next start", async () => {
    await expect(access(path.join(install.dirs.pkglibdir, "hstore.so"))).rejects.toThrow();

    const first = await startCompute();
    await asAlice(first.handle, async (client) => {
      await client.query("CREATE EXTENSION hstore");
      const { rows } = await client.query(`SELECT ('a=>1'::hstore) -> 'a' AS ${marker}`);
      expect(rows).toEqual([{ [marker]: "1" }]);
    });
    await access(path.join(install.dirs.pkglibdir, "hstore.so"));
    expect(await first.ctl.ensureExtension({ name: "hstore" })).toMatchObject({ extension: "hstore", alreadyPresent: true });
    const refused = await first.ctl.ensureExtension({ name: "not_in_the_index" }).catch((err: unknown) => ConnectError.from(err));
    expect(refused).toMatchObject({ code: Code.PermissionDenied });

    const terminated = await first.ctl.terminate({ mode: TerminateMode.FAST });
    expect(terminated.status?.stateName).toBe("terminated");
    expect(terminated.status?.error).toBe("");
    const { files } = await epufs.listFiles({ endpoint });
    expect(files.map((f) => f.path)).toContain("pg_stat/pg_stat_statements.stat");
    await first.stop();

    // Stopped before the next test: every compute here shares one PGDATA, which a new start wipes.
    const second = await startCompute();
    try {
      const status = (await second.ctl.getStatus({})).status!;
      expect(status.error).toBe("");
      expect(status.startupMetrics!.savedFilesMs).toBeGreaterThanOrEqual(0n);
      const { statements } = await second.ctl.getInsights({ limit: 1000 });
      expect(statements.find((s) => s.query.includes(marker))).toMatchObject({ calls: 1n, database: "app", role: "alice" });
      expect((await second.ctl.listRoles({})).roles.map((r) => r.name)).toContain("alice");
      expect((await second.ctl.listDatabases({})).databases.map((d) => [d.name, d.owner])).toContainEqual(["app", "alice"]);
      // Every start is fresh: the extension created before the restart is gone with the old PGDATA.
      expect(await asAlice(second.handle, async (c) => (await c.query("SELECT extname FROM pg_extension WHERE extname = 'hstore'")).rows)).toEqual([]);
    } finally {
      await second.stop();
    }
  });

  it("goes to failed with the reason when its Postgres crashes", async () => {
    const compute = await startCompute();
    const { handle, ctl } = compute;
    const failed = handle.compute.state.waitFor((st) => st.state === "failed");
    process.kill(handle.compute.postgres!.pid, "SIGKILL");
    await failed;
    const status = (await ctl.getStatus({})).status!;
    expect(status.stateName).toBe("failed");
    expect(status.error).toMatch(/^postgres exited unexpectedly \(code null, signal SIGKILL\); log tail:/);
    await compute.stop();
  });

  it("still starts when Epufs is down, and says so in the status", async () => {
    await epufsServer.close();
    const compute = await startCompute();
    const { ctl } = compute;
    const status = (await ctl.getStatus({})).status!;
    expect(status.stateName).toBe("running");
    expect(status.error).toContain(`endpoint storage unavailable at 127.0.0.1:${epufsServer.address.port}; started without saved files`);
    const terminated = await ctl.terminate({ mode: TerminateMode.FAST });
    expect(terminated.status?.stateName).toBe("terminated");
    expect(terminated.status?.error).toContain("could not save endpoint files to Epufs");
    await compute.stop();
  });

  it("lets a reconfigure allow an extension the compute could not use before", async () => {
    const compute = await startCompute();
    const { handle, ctl } = compute;
    await expect(asAlice(handle, (c) => c.query("CREATE EXTENSION cube"))).rejects.toThrow('extension "cube" is not available to this compute');
    await expect(access(path.join(install.dirs.pkglibdir, "cube.so"))).rejects.toThrow();
    const res = await ctl.configure({ specJson: specText });
    expect(res.status?.stateName).toBe("running");
    await asAlice(handle, async (c) => {
      await c.query("CREATE EXTENSION cube");
      expect((await c.query("SELECT cube_dim('(1,2,3)'::cube) AS dims")).rows).toEqual([{ dims: 3 }]);
    });
    await compute.stop();
  });
});
