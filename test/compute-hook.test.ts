import { access, chmod, mkdtemp } from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import pg from "pg";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import {
  computeHookSettings,
  createExtensionServerRoute,
  ExtensionFiles,
  type ExtensionFilesEvent,
} from "../src/computectl/extensions/index.js";
import type { RemoteExtensions } from "../src/computectl/compute-spec.js";
import { freePort } from "../src/net/free-port.js";
import { initdb, resolveUnprivilegedUser, startPostgres, systemPgBinaries, type OsUser, type RunningPostgres } from "../src/pg/index.js";
import { startServer, type ServerHandle } from "../src/server/index.js";
import {
  buildComputeHookInto,
  createScratchInstall,
  packContribBundle,
  startTestExtensionStore,
  type ScratchInstall,
  type TestExtensionStore,
} from "./helpers/compute-extensions-fixtures.js";

const tenantId = "7f2c1d3e4b5a69788796a5b4c3d2e1f0";
const remote = ["hstore", "isn", "seg", "ltree", "cube"];

/** A TCP server that reads requests and never answers: a compute-ctl that hangs. */
async function startUnresponsiveServer(): Promise<{ addr: string; firstRequest: Promise<string>; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  let received!: (request: string) => void;
  const firstRequest = new Promise<string>((resolve) => (received = resolve));
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("data", (data) => received(data.toString()));
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    addr: `127.0.0.1:${port}`,
    firstRequest,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

describe("compute hook", () => {
  let install: ScratchInstall;
  let store: TestExtensionStore;
  let files: ExtensionFiles;
  let computeCtl: ServerHandle;
  let postgres: RunningPostgres;
  let user: OsUser;
  let dataRoot: string;
  let remoteExtensions: RemoteExtensions;
  let token: string;
  const events: ExtensionFilesEvent[] = [];

  const computeCtlAddr = () => `127.0.0.1:${computeCtl.address.port}`;

  async function withClient<T>(fn: (client: pg.Client) => Promise<T>, database = "postgres"): Promise<T> {
    const client = new pg.Client({ connectionString: postgres.connectionUri(database) });
    await client.connect();
    try {
      return await fn(client);
    } finally {
      await client.end();
    }
  }

  /** A session whose compute hook asks a compute-ctl that reads requests and never answers. */
  async function withClientOfHungComputeCtl(fn: (client: pg.Client, hung: { addr: string; firstRequest: Promise<string> }) => Promise<void>): Promise<void> {
    const hung = await startUnresponsiveServer();
    try {
      await withClient(async (client) => {
        await client.query(`SET pgmesh.compute_ctl_addr = '${hung.addr}'`);
        await fn(client, hung);
      });
    } finally {
      await hung.close();
    }
  }

  async function startComputePostgres(settings: Record<string, string>, binaries = install.binaries): Promise<RunningPostgres> {
    return startPostgres({
      binaries,
      user,
      dataDir: path.join(dataRoot, "data"),
      port: await freePort(),
      socketDir: path.join(dataRoot, "sock"),
      logFile: path.join(dataRoot, "postgres.log"),
      settings,
    });
  }

  beforeAll(async () => {
    user = await resolveUnprivilegedUser();
    install = await createScratchInstall(remote);
    await buildComputeHookInto(install);
    store = await startTestExtensionStore();
    for (const name of remote) await store.publishApproved(await packContribBundle(name));
    remoteExtensions = await store.remoteExtensions(tenantId);
    token = await store.downloadToken(tenantId, "ep-hook", remoteExtensions);
    const logger = pino({ level: "silent" });
    files = new ExtensionFiles({
      remoteExtensions,
      extensionStore: { addr: store.addr, token },
      dirs: install.dirs,
      logger,
      maxAttempts: 2,
      initialBackoffMs: 50,
      onEvent: (event) => events.push(event),
    });
    await files.prepare();
    computeCtl = await startServer({ port: 0, services: [], auth: { insecure: true }, logger, fallback: createExtensionServerRoute(files, logger) });
    dataRoot = await mkdtemp(path.join(install.root, "pgdata-"));
    await chmod(dataRoot, 0o755);
    await initdb({ binaries: systemPgBinaries(15), dataDir: path.join(dataRoot, "data"), user, extraArgs: ["--no-sync"] });
    postgres = await startComputePostgres(computeHookSettings({ computeCtlAddr: computeCtlAddr() }));
  });

  afterAll(async () => {
    await postgres?.stop("immediate");
    await files?.close();
    await computeCtl?.close();
    await store?.stop();
    await install?.remove();
  });

  it("makes CREATE EXTENSION of an allowed extension download its bundle, then succeed", async () => {
    await expect(access(path.join(install.dirs.pkglibdir, "hstore.so"))).rejects.toThrow();
    const value = await withClient(async (client) => {
      await client.query("CREATE EXTENSION hstore");
      return (await client.query("SELECT ('a=>1, b=>2'::hstore) -> 'b' AS b")).rows[0].b;
    });
    expect(value).toBe("2");
    expect(events).toContainEqual(expect.objectContaining({ type: "installed", extension: "hstore", priority: "on_demand" }));
  });

  it("fails CREATE EXTENSION of a name the compute may not use with compute-ctl's message", async () => {
    const attempt = withClient((client) => client.query("CREATE EXTENSION postgis"));
    await expect(attempt).rejects.toThrow(
      'extension "postgis" is not available to this compute: it is not in the compute spec\'s remote_extensions and not installed with Postgres; ask the control plane to grant it to the tenant',
    );
    await expect(attempt).rejects.toMatchObject({ code: "42501" });
  });

  it("makes LOAD of '$libdir/name' fetch the bundle that provides the library", async () => {
    await expect(access(path.join(install.dirs.pkglibdir, "isn.so"))).rejects.toThrow();
    await withClient((client) => client.query("LOAD '$libdir/isn'"));
    await access(path.join(install.dirs.pkglibdir, "isn.so"));
    expect(events).toContainEqual(expect.objectContaining({ type: "installed", extension: "isn" }));
  });

  it("makes ALTER EXTENSION … UPDATE ask for the files too", async () => {
    await withClient(async (client) => {
      await client.query("CREATE DATABASE alter_update");
    });
    // ltree's bundle is not installed yet; ALTER on a database where it is not created still goes through the hook first.
    const attempt = withClient((client) => client.query("ALTER EXTENSION ltree UPDATE"), "alter_update");
    await expect(attempt).rejects.toThrow('extension "ltree" does not exist');
    await access(path.join(install.dirs.pkglibdir, "ltree.so"));
  });

  it("fails with compute-ctl's reason when the download fails, and places no file", async () => {
    const { sha256 } = remoteExtensions.extensionData["cube"]!;
    const corrupted = Buffer.from((await packContribBundle("cube")).tar);
    corrupted[corrupted.length >> 1]! ^= 0xff;
    const original = await store.replaceBundleBytes("cube", sha256, corrupted);
    try {
      const attempt = withClient((client) => client.query("CREATE EXTENSION cube"));
      await expect(attempt).rejects.toThrow(`could not make extension "cube" available (bundle sha256 ${sha256}) after 2 attempts: the bundle downloaded for extension "cube" has sha256 `);
      await expect(attempt).rejects.toMatchObject({ code: "38000", detail: `compute-ctl at ${computeCtlAddr()} answered HTTP 500 for extension "cube".` });
      await expect(access(path.join(install.dirs.pkglibdir, "cube.so"))).rejects.toThrow();
    } finally {
      await store.replaceBundleBytes("cube", sha256, original);
    }
    await withClient((client) => client.query("CREATE EXTENSION cube"));
  });

  it("does not call compute-ctl for an extension Postgres ships", async () => {
    await withClient(async (client) => {
      await client.query("SET pgmesh.compute_ctl_addr = '127.0.0.1:1'");
      await client.query("CREATE EXTENSION pg_trgm");
    });
  });

  it("does not call compute-ctl again once an extension's bundle is installed", async () => {
    await withClient(async (client) => {
      await client.query("CREATE DATABASE second_db");
    });
    await withClient(async (client) => {
      await client.query("SET pgmesh.compute_ctl_addr = '127.0.0.1:1'");
      await client.query("CREATE EXTENSION hstore");
    }, "second_db");
  });

  it("says so when compute-ctl cannot be reached", async () => {
    const port = await freePort();
    const attempt = withClient(async (client) => {
      await client.query(`SET pgmesh.compute_ctl_addr = '127.0.0.1:${port}'`);
      await client.query("CREATE EXTENSION seg");
    });
    await expect(attempt).rejects.toThrow(
      `could not reach compute-ctl at 127.0.0.1:${port} to make extension "seg" available: connect: Connection refused`,
    );
  });

  it("gives up after pgmesh.extension_timeout_ms and leaves the session usable", async () => {
    await withClientOfHungComputeCtl(async (client, hung) => {
      await client.query("SET pgmesh.extension_timeout_ms = 300");
      await expect(client.query("CREATE EXTENSION seg")).rejects.toThrow(
        `compute-ctl at ${hung.addr} did not make extension "seg" available within 300 ms`,
      );
      expect((await client.query("SELECT 1 AS one")).rows).toEqual([{ one: 1 }]);
    });
  });

  it("stops waiting when statement_timeout fires", async () => {
    await withClientOfHungComputeCtl(async (client) => {
      await client.query("SET statement_timeout = 300");
      await expect(client.query("LOAD 'seg'")).rejects.toThrow("canceling statement due to statement timeout");
    });
  });

  it("sends a plain HTTP/1.1 POST, waits as wait event Extension, and stops waiting on query cancel", async () => {
    await withClientOfHungComputeCtl(async (waiting, hung) => {
      const pid = (await waiting.query("SELECT pg_backend_pid() AS pid")).rows[0].pid;
      const attempt = waiting.query("LOAD '$libdir/seg'");
      attempt.catch(() => undefined);
      expect(await hung.firstRequest).toMatch(/^POST \/extension_server\/seg\?is_library=true HTTP\/1\.1\r\n[^]*Content-Length: 0\r\n[^]*\r\n\r\n$/);
      await withClient(async (canceller) => {
        // The backend enters its wait just after sending the request: it may not be there yet when the request arrives.
        await vi.waitFor(async () => {
          const { rows } = await canceller.query("SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1", [pid]);
          expect(rows).toEqual([{ wait_event_type: "Extension" }]);
        }, { timeout: 30_000, interval: 20 });
        const { rows } = await canceller.query("SELECT pg_cancel_backend($1) AS cancelled", [pid]);
        expect(rows).toEqual([{ cancelled: true }]);
      });
      await expect(attempt).rejects.toThrow("canceling statement due to user request");
    });
  });

  it("lets only superusers change pgmesh.compute_ctl_addr, and only to host:port", async () => {
    await withClient(async (client) => {
      await expect(client.query("SET pgmesh.compute_ctl_addr = 'no-port'")).rejects.toThrow(
        'invalid value for parameter "pgmesh.compute_ctl_addr": "no-port"',
      );
      await client.query("CREATE ROLE plain_user LOGIN");
      await client.query("SET ROLE plain_user");
      await expect(client.query("SET pgmesh.compute_ctl_addr = '127.0.0.1:1'")).rejects.toThrow(
        'permission denied to set parameter "pgmesh.compute_ctl_addr"',
      );
    });
  });

  describe("loaded through session_preload_libraries", () => {
    beforeAll(async () => {
      await postgres.stop("fast");
      const { shared_preload_libraries: _hookFirst, ...hookSettings } = computeHookSettings({ computeCtlAddr: computeCtlAddr() });
      postgres = await startComputePostgres(hookSettings);
    });

    it("asks compute-ctl before CREATE EXTENSION in that session", async () => {
      const client = new pg.Client({
        connectionString: postgres.connectionUri(),
        options: "-c session_preload_libraries=pgmesh_compute_hook",
      });
      await client.connect();
      try {
        await client.query("CREATE EXTENSION seg");
        expect((await client.query("SELECT '1 .. 2'::seg::text AS s")).rows).toEqual([{ s: "1 .. 2" }]);
      } finally {
        await client.end();
      }
      expect(events).toContainEqual(expect.objectContaining({ type: "installed", extension: "seg" }));
    });
  });

  describe("on a new install, with databases whose extensions were created before", () => {
    // A compute starting from a snapshot: its catalogs have hstore, cube and seg, its install has none of their files.
    let freshInstall: ScratchInstall;
    let freshFiles: ExtensionFiles;
    let freshComputeCtl: ServerHandle;
    const freshEvents: ExtensionFilesEvent[] = [];

    async function extensionsInDatabases(): Promise<string[]> {
      const names = new Set<string>();
      const databases = await withClient(async (client) => (await client.query("SELECT datname FROM pg_database WHERE datallowconn")).rows);
      for (const { datname } of databases) {
        await withClient(async (client) => {
          for (const { extname } of (await client.query("SELECT extname FROM pg_extension")).rows) names.add(extname);
        }, datname);
      }
      return [...names];
    }

    beforeAll(async () => {
      await postgres.stop("fast");
      freshInstall = await createScratchInstall(remote);
      await buildComputeHookInto(freshInstall);
      const logger = pino({ level: "silent" });
      freshFiles = new ExtensionFiles({
        remoteExtensions,
        extensionStore: { addr: store.addr, token },
        dirs: freshInstall.dirs,
        logger,
        backgroundConcurrency: 1,
        onEvent: (event) => freshEvents.push(event),
      });
      await freshFiles.prepare();
      freshComputeCtl = await startServer({ port: 0, services: [], auth: { insecure: true }, logger, fallback: createExtensionServerRoute(freshFiles, logger) });
      postgres = await startComputePostgres(
        computeHookSettings({ computeCtlAddr: `127.0.0.1:${freshComputeCtl.address.port}` }),
        freshInstall.binaries,
      );
    });

    afterAll(async () => {
      await postgres?.stop("fast");
      await freshFiles?.close();
      await freshComputeCtl?.close();
      await freshInstall?.remove();
    });

    it("cannot load a library on a function's first call: vanilla Postgres has no hook there", async () => {
      await expect(withClient((client) => client.query("SELECT '1 .. 2'::seg::text AS s"))).rejects.toThrow(
        /could not access file "\$libdir\/seg": No such file or directory/,
      );
    });

    it("serves such calls once the background download, extensions created in a database first, is done", async () => {
      const summary = await freshFiles.startBackground(extensionsInDatabases);
      expect(summary.failed).toEqual([]);
      const started = freshEvents.flatMap((e) => (e.type === "download_started" ? [[e.extension, e.priority]] : []));
      expect(started.slice(0, 3).map(([, priority]) => priority)).toEqual(["installed", "installed", "installed"]);
      expect(started.slice(0, 3).map(([name]) => name).sort()).toEqual(["cube", "hstore", "seg"]);
      expect(started.slice(3)).toEqual([
        ["isn", "background"],
        ["ltree", "background"],
      ]);
      expect((await withClient((client) => client.query("SELECT '1 .. 2'::seg::text AS s"))).rows).toEqual([{ s: "1 .. 2" }]);
    });
  });
});
