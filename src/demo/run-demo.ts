import { execa } from "execa";
import { mkdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import type { Logger } from "pino";
import { createClient } from "@connectrpc/connect";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { ComputeCtlService, ComputeState, type ComputeStatus } from "../../gen/pgmesh/computectl/v1/compute_ctl_pb.js";
import { ExtensionStoreService } from "../../gen/pgmesh/extensionstore/v1/extension_store_pb.js";
import { ensureDevKeys, loadSigningKey, signToken } from "../auth/index.js";
import { createClientTransport } from "../server/index.js";
import { findHypopgDeb, publishDemoExtensions, type PublishedExtension } from "./demo-extensions.js";
import { demoComputeSpec } from "./demo-spec.js";
import { startMeshProcess, type MeshProcess } from "./mesh-process.js";

export interface DemoOptions {
  /** The embedded-defaults root, e.g. <repo>/.pgmesh: keys, storage, bundle, debs. */
  readonly pgmeshDir: string;
  readonly bundleDir: string;
  readonly host: string;
  readonly ports: { readonly extensionStore: number; readonly epufs: number; readonly computeCtl: number; readonly walredo: number };
  readonly pgPort: number;
  readonly logger: Logger;
}

export interface RunningDemo {
  /** The demo's application role on its database. */
  readonly connectionUri: string;
  /** The bootstrap superuser (trust auth on loopback). */
  readonly superuserUri: string;
  readonly status: ComputeStatus;
  readonly extensions: readonly PublishedExtension[];
  readonly processes: readonly MeshProcess[];
  /** Stops compute-ctl first (it saves the endpoint's files to Epufs), then the services; rejects naming any that did not exit 0. */
  stop(): Promise<void>;
}

const ids = { tenantId: "de000000000000000000000000000001", timelineId: "de000000000000000000000000000002", endpointId: "ep-demo" };
const appPassword = "pgmesh-demo";
const tokenTtlSec = 24 * 3600;

/**
 * The main job: brings up extension-store, epufs, walredo and compute-ctl as
 * separate processes on embedded defaults (local directories, dev keys),
 * publishes real extensions, and starts a compute from a demo spec.
 */
export async function runDemo(options: DemoOptions): Promise<RunningDemo> {
  const { logger, host, ports } = options;
  const demoDir = path.join(options.pgmeshDir, "demo");
  const logDir = path.join(demoDir, "logs");
  await mkdir(logDir, { recursive: true });
  const keys = await ensureDevKeys(path.join(options.pgmeshDir, "keys"));
  const signingKey = await loadSigningKey(keys.privateKeyPath);
  const adminToken = await signToken(signingKey, { scope: "admin" }, { ttlSec: tokenTtlSec });
  const computeToken = await signToken(signingKey, { scope: "compute", ...ids }, { ttlSec: tokenTtlSec });

  const processes: MeshProcess[] = [];
  const stop = async () => {
    const failed: string[] = [];
    for (const process of [...processes].reverse()) {
      const code = await process.stop();
      if (code !== 0) failed.push(`${process.name} exited with ${code ?? "a signal"} (see ${process.options.logFile})`);
    }
    if (failed.length > 0) throw new Error(`stopping the mesh: ${failed.join("; ")}`);
  };
  const start = async (binary: string, port: number, args: string[]) => {
    const url = `http://${host}:${port}`;
    logger.info({ binary, url }, "starting");
    processes.push(await startMeshProcess({
      binary, url, logFile: path.join(logDir, `${binary}.log`),
      args: ["--listen", `${host}:${port}`, "--auth-keys", keys.jwksPath, ...args],
    }));
    return url;
  };
  try {
    const storage = (service: string) => `file://${path.join(options.pgmeshDir, service)}`;
    const epufsUrl = await start("epufs", ports.epufs, ["--storage", storage("epufs")]);
    const storeUrl = await start("extension-store", ports.extensionStore, [
      "--storage", storage("extension-store"), "--max-download-token-ttl", String(tokenTtlSec),
    ]);
    await start("walredo", ports.walredo, ["--bundle", options.bundleDir]);

    const store = createClient(ExtensionStoreService, createClientTransport({ baseUrl: storeUrl, token: adminToken }));
    const extensions = await publishDemoExtensions({
      store,
      hypopgDeb: await findHypopgDeb(options.pgmeshDir),
      pgConfig: "/usr/lib/postgresql/15/bin/pg_config",
      outDir: await mkdir(path.join(demoDir, "bundles"), { recursive: true }).then(() => path.join(demoDir, "bundles")),
    });
    logger.info({ extensions: extensions.map((e) => `${e.name} ${e.version}`) }, "extensions published and approved");
    const { remoteExtensionsJson } = await store.exportRemoteExtensions({ tenantId: ids.tenantId, pgMajor: 15 });
    const { token: downloadToken } = await store.issueDownloadToken({
      tenantId: ids.tenantId, endpointId: ids.endpointId, sha256: extensions.map((e) => e.sha256), ttlSeconds: tokenTtlSec,
    });

    // The compute's own Postgres install: a hard-linked copy of the bundle, so
    // extension files compute-ctl downloads never land in the shared bundle.
    const install = path.join(demoDir, "install");
    await rm(install, { recursive: true, force: true });
    await execa("cp", ["-al", path.join(options.bundleDir, "v15"), install]).catch(async () => {
      // Hard links need one filesystem: a --dir elsewhere than the bundle gets a plain copy.
      await rm(install, { recursive: true, force: true });
      await execa("cp", ["-a", path.join(options.bundleDir, "v15"), install]);
    });

    const specFile = path.join(demoDir, "spec.json");
    await writeFile(specFile, JSON.stringify(demoComputeSpec({
      ...ids, appPassword, pgPort: options.pgPort,
      remoteExtensions: JSON.parse(remoteExtensionsJson), extensionStoreAddr: `${host}:${ports.extensionStore}`, downloadToken,
      epufsAddr: new URL(epufsUrl).host, computeToken, timelineStorage: storage("timelines"),
    }), null, 2));
    const computeUrl = await start("compute-ctl", ports.computeCtl, [
      "--pgdata", path.join(demoDir, "pgdata"), "--spec", specFile, "--pgbin", path.join(install, "bin", "postgres"),
    ]);
    const controlToken = await signToken(signingKey, { scope: "control_plane" }, { ttlSec: tokenTtlSec });
    const status = await waitForRunning(createClient(ComputeCtlService, createClientTransport({ baseUrl: computeUrl, token: controlToken })));
    return {
      connectionUri: `postgresql://app:${appPassword}@${host}:${options.pgPort}/app`,
      superuserUri: `postgresql://cloud_admin@${host}:${options.pgPort}/app`,
      status, extensions, processes, stop,
    };
  } catch (err) {
    await stop().catch((stopError: unknown) => logger.error({ err: stopError }, "stopping after a failed start"));
    throw err;
  }
}

async function waitForRunning(computeCtl: ReturnType<typeof createClient<typeof ComputeCtlService>>): Promise<ComputeStatus> {
  for await (const { status } of computeCtl.watchStatus({})) {
    if (!status) continue;
    if (status.state === ComputeState.RUNNING) return status;
    if (status.state === ComputeState.FAILED || status.state === ComputeState.TERMINATED) {
      throw new Error(`the compute is ${status.stateName}: ${status.error}`);
    }
  }
  throw new Error("compute-ctl closed the status stream before the compute was running");
}

/** Start-up phases, for a person. */
export function describeStartup(status: ComputeStatus): string {
  const m = status.startupMetrics;
  if (!m) return "(no start-up metrics)";
  const phases: Array<[string, bigint]> = [
    ["wait for spec", m.waitForSpecMs], ["base data", m.baseDataMs], ["saved files", m.savedFilesMs],
    ["extensions", m.extensionsMs], ["start postgres", m.startPostgresMs], ["config", m.configMs], ["total", m.totalMs],
  ];
  const since = status.stateChangeTime ? ` (running since ${timestampDate(status.stateChangeTime).toISOString()})` : "";
  return phases.map(([name, ms]) => `  ${name.padEnd(15)} ${String(ms).padStart(6)} ms`).join("\n") + since;
}
