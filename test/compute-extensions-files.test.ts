import { access, copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import os from "node:os";
import path from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import { execa } from "execa";
import { pino } from "pino";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { RemoteExtensions } from "../src/computectl/compute-spec.js";
import { SpecError } from "../src/computectl/spec-error.js";
import {
  createExtensionServerRoute,
  ExtensionDownloadError,
  ExtensionFiles,
  ExtensionFilesClosedError,
  ExtensionNotAvailableError,
  FileOwnerConflictError,
  InvalidExtensionNameError,
  PreloadLibraryMissingError,
  readPgInstallDirs,
  type ExtensionFilesEvent,
  type ExtensionFilesOptions,
  type PgInstallDirs,
} from "../src/computectl/extensions/index.js";
import { freePort } from "../src/net/free-port.js";
import { startServer, type ServerHandle } from "../src/server/index.js";
import { systemPgBinaries } from "../src/pg/index.js";
import { createScratchInstall, packContribBundle, startTestExtensionStore, type TestExtensionStore } from "./helpers/compute-extensions-fixtures.js";
import { VirtualNetwork, type VirtualHost } from "./helpers/virtual-network.js";

const tenantId = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";
const published = ["citext", "cube", "earthdistance", "hstore", "isn", "ltree", "seg"];
const exists = (file: string) => access(file).then(() => true, () => false);

describe("ExtensionFiles", () => {
  let store: TestExtensionStore;
  let remoteExtensions: RemoteExtensions;
  let token: string;
  let root: string;
  let dirs: PgInstallDirs;
  let events: ExtensionFilesEvent[];
  const opened: ExtensionFiles[] = [];

  beforeAll(async () => {
    store = await startTestExtensionStore();
    for (const name of published) await store.publishApproved(await packContribBundle(name));
    remoteExtensions = await store.remoteExtensions(tenantId);
    token = await store.downloadToken(tenantId, "ep-files", remoteExtensions);
  });

  afterAll(async () => {
    await store?.stop();
  });

  beforeEach(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), "pgmesh-ext-files-"));
    dirs = { sharedir: path.join(root, "share"), pkglibdir: path.join(root, "lib") };
    await mkdir(path.join(dirs.sharedir, "extension"), { recursive: true });
    await mkdir(dirs.pkglibdir, { recursive: true });
    events = [];
  });

  afterEach(async () => {
    await Promise.all(opened.splice(0).map((files) => files.close()));
    await rm(root, { recursive: true, force: true });
  });

  function open(options: Partial<ExtensionFilesOptions> = {}): ExtensionFiles {
    const files = new ExtensionFiles({
      remoteExtensions,
      extensionStore: { addr: store.addr, token },
      dirs,
      logger: pino({ level: "silent" }),
      initialBackoffMs: 20,
      onEvent: (event) => events.push(event),
      ...options,
    });
    opened.push(files);
    return files;
  }

  const started = () => events.filter((e) => e.type === "download_started");
  const installedEvents = () => events.filter((e) => e.type === "installed").map((e) => e.extension);
  const extensionFile = (file: string) => path.join(dirs.sharedir, "extension", file);

  /** Resolves at the first event `matches` accepts. */
  function nextEvent(matches: (event: ExtensionFilesEvent) => boolean): Promise<ExtensionFilesEvent> {
    return new Promise((resolve) => {
      const push = events.push.bind(events);
      events.push = (...items) => {
        const found = items.find(matches);
        if (found) resolve(found);
        return push(...items);
      };
    });
  }

  describe("prepare", () => {
    it("writes the control file of every allowed extension with a pending mark, and fetches nothing else", async () => {
      const timings = await open().prepare();
      for (const name of published) {
        expect(await readFile(extensionFile(`${name}.control`), "utf8")).toBe(remoteExtensions.extensionData[name]!.controlData[`${name}.control`]);
        expect(await readFile(extensionFile(`${name}.pgmesh-pending`), "utf8")).toBe(`${remoteExtensions.extensionData[name]!.sha256}\n`);
      }
      expect(await readdir(dirs.pkglibdir)).toEqual([]);
      expect(timings).toMatchObject({ controlFileExtensions: published.length, preloadBundles: 0 });
      expect(timings.totalMs).toBeGreaterThanOrEqual(timings.controlFilesMs);
    });

    it("installs the bundles of the preload libraries before it resolves", async () => {
      const timings = await open({ preloadLibraries: ["$libdir/hstore", "isn.so"] }).prepare();
      expect(await exists(path.join(dirs.pkglibdir, "hstore.so"))).toBe(true);
      expect(await exists(path.join(dirs.pkglibdir, "isn.so"))).toBe(true);
      expect(await exists(extensionFile("hstore.pgmesh-pending"))).toBe(false);
      expect(await exists(extensionFile("seg.pgmesh-pending"))).toBe(true);
      expect(timings.preloadBundles).toBe(2);
      expect(started().map((e) => e.extension).sort()).toEqual(["hstore", "isn"]);
    });

    it("installs what a preload library's extension requires, and leaves no pending mark behind", async () => {
      await open({ preloadLibraries: ["earthdistance"] }).prepare();
      for (const name of ["cube", "earthdistance"]) {
        expect(await exists(path.join(dirs.pkglibdir, `${name}.so`))).toBe(true);
        expect(await exists(extensionFile(`${name}.pgmesh-pending`))).toBe(false);
      }
      expect(installedEvents()).toEqual(["cube", "earthdistance"]);
    });

    it("does not fetch a bundle again on a later start on the same install", async () => {
      await open({ preloadLibraries: ["hstore"] }).prepare();
      events = [];
      const timings = await open({ preloadLibraries: ["hstore"] }).prepare();
      expect(started()).toEqual([]);
      expect(timings.controlFileExtensions).toBe(published.length - 1);
    });

    it("refuses to write over a control file the Postgres install has with other content, naming both owners", async () => {
      await writeFile(extensionFile("seg.control"), "comment = 'the install's own seg'\n");
      const attempt = open().prepare();
      await expect(attempt).rejects.toThrow(FileOwnerConflictError);
      await expect(attempt).rejects.toThrow(/files of extension "seg" .*"share\/extension\/seg.control" belongs to the Postgres install/);
      expect(await readFile(extensionFile("seg.control"), "utf8")).toBe("comment = 'the install's own seg'\n");
    });

    it("fails with PreloadLibraryMissingError for a preload library nobody provides", async () => {
      const attempt = open({ preloadLibraries: ["pg_nonexistent"] }).prepare();
      await expect(attempt).rejects.toThrow(PreloadLibraryMissingError);
      await expect(attempt).rejects.toMatchObject({ code: Code.FailedPrecondition });
      await expect(attempt).rejects.toThrow(`library "pg_nonexistent" is in the preload libraries but is neither in ${dirs.pkglibdir}`);
    });
  });

  describe("ensure", () => {
    it("fetches an allowed extension's bundle once, then reports it already present", async () => {
      const files = open();
      await files.prepare();
      expect(await files.ensure("hstore")).toEqual({ extension: "hstore", alreadyPresent: false });
      expect(await exists(path.join(dirs.pkglibdir, "hstore.so"))).toBe(true);
      expect(await exists(extensionFile("hstore--1.4.sql"))).toBe(true);
      expect(await exists(extensionFile("hstore.pgmesh-pending"))).toBe(false);
      expect(await files.ensure("hstore")).toEqual({ extension: "hstore", alreadyPresent: true });
      expect(started()).toHaveLength(1);
    });

    it("finds a library's extension through library_index", async () => {
      const files = open();
      await files.prepare();
      expect(await files.ensure("$libdir/isn", { isLibrary: true })).toEqual({ extension: "isn", alreadyPresent: false });
      expect(await exists(path.join(dirs.pkglibdir, "isn.so"))).toBe(true);
    });

    it("fetches the extensions a control file requires first", async () => {
      const files = open();
      await files.prepare();
      await files.ensure("earthdistance");
      expect(installedEvents()).toEqual(["cube", "earthdistance"]);
    });

    it("shares one download among concurrent requests for one bundle", async () => {
      const files = open();
      await files.prepare();
      const results = await Promise.all([
        files.ensure("ltree"),
        files.ensure("ltree"),
        files.ensure("ltree", { isLibrary: true }),
        files.ensure("ltree"),
      ]);
      expect(results.map((r) => r.extension)).toEqual(["ltree", "ltree", "ltree", "ltree"]);
      expect(started()).toHaveLength(1);
    });

    it("accepts an extension Postgres ships without asking the store", async () => {
      await copyFile("/usr/share/postgresql/15/extension/pg_trgm.control", extensionFile("pg_trgm.control"));
      expect(await open().ensure("pg_trgm")).toEqual({ extension: "pg_trgm", alreadyPresent: true });
      expect(started()).toEqual([]);
    });

    it("refuses a name the compute may not use with PERMISSION_DENIED", async () => {
      const attempt = open().ensure("postgis");
      await expect(attempt).rejects.toThrow(ExtensionNotAvailableError);
      await expect(attempt).rejects.toThrow(ConnectError);
      await expect(attempt).rejects.toMatchObject({ code: Code.PermissionDenied });
      await expect(attempt).rejects.toThrow('extension "postgis" is not available to this compute');
      await expect(open().ensure("plpython3u", { isLibrary: true })).rejects.toThrow(
        'library "plpython3u" is not available to this compute: no extension in the compute spec\'s remote_extensions provides it',
      );
    });

    it("refuses a malformed name with INVALID_ARGUMENT before looking it up", async () => {
      for (const name of ["../etc", "a--b", "", "x/y"]) {
        await expect(open().ensure(name)).rejects.toThrow(InvalidExtensionNameError);
      }
      await expect(open().ensure("../etc")).rejects.toMatchObject({ code: Code.InvalidArgument });
    });

    it("places no file when the store serves corrupted bytes, and says so", async () => {
      const { sha256 } = remoteExtensions.extensionData["citext"]!;
      const bundle = await packContribBundle("citext");
      const corrupted = Buffer.from(bundle.tar);
      corrupted[corrupted.length >> 1]! ^= 0xff;
      const original = await store.replaceBundleBytes("citext", sha256, corrupted);
      try {
        const files = open({ maxAttempts: 2 });
        await files.prepare();
        const attempt = files.ensure("citext");
        await expect(attempt).rejects.toThrow(ExtensionDownloadError);
        await expect(attempt).rejects.toMatchObject({ code: Code.DataLoss });
        await expect(attempt).rejects.toThrow(`could not make extension "citext" available (bundle sha256 ${sha256}) after 2 attempts`);
        expect(await exists(path.join(dirs.pkglibdir, "citext.so"))).toBe(false);
        expect((await readdir(path.join(dirs.sharedir, "extension"))).filter((f) => f.startsWith("citext"))).toEqual([
          "citext.control",
          "citext.pgmesh-pending",
        ]);
        expect((await readdir(dirs.sharedir)).filter((f) => f.startsWith("."))).toEqual([]);
        expect(await readdir(dirs.pkglibdir)).toEqual([]);
      } finally {
        await store.replaceBundleBytes("citext", sha256, original);
      }
    });
  });

  describe("retries", () => {
    /** ExtensionFiles whose store address has nothing listening yet. */
    async function openOnDownStore(options: Partial<ExtensionFilesOptions>): Promise<{ files: ExtensionFiles; port: number }> {
      const port = await freePort();
      const files = open({ extensionStore: { addr: `127.0.0.1:${port}`, token }, ...options });
      await files.prepare();
      return { files, port };
    }

    it("retries a failed download with backoff and succeeds once the store is up", async () => {
      // Retries for about 12 s: the store must come up between two attempts however slow the machine.
      const { files, port } = await openOnDownStore({ maxAttempts: 30, maxBackoffMs: 500 });
      const firstFailure = nextEvent((e) => e.type === "download_failed");
      const ensured = files.ensure("seg");
      expect(await firstFailure).toMatchObject({ extension: "seg", attempt: 1, willRetry: true });
      const server = await store.serveOn(port);
      try {
        expect(await ensured).toEqual({ extension: "seg", alreadyPresent: false });
      } finally {
        await server.close();
      }
      expect(started().length).toBeGreaterThanOrEqual(2);
      expect(installedEvents()).toEqual(["seg"]);
    });

    it("gives up after maxAttempts with UNAVAILABLE and a message naming the store's failure", async () => {
      const { files } = await openOnDownStore({ maxAttempts: 3 });
      const attempt = files.ensure("seg");
      await expect(attempt).rejects.toThrow(ExtensionDownloadError);
      await expect(attempt).rejects.toMatchObject({ code: Code.Unavailable });
      await expect(attempt).rejects.toThrow(/could not make extension "seg" available \(bundle sha256 [0-9a-f]{64}\) after 3 attempts: /);
      const failures = events.filter((e) => e.type === "download_failed");
      expect(failures.map((e) => e.type === "download_failed" && [e.attempt, e.willRetry])).toEqual([
        [1, true],
        [2, true],
        [3, false],
      ]);
    });

    it("does not retry a download the token does not cover", async () => {
      const files = open({ extensionStore: { addr: store.addr, token: "not-a-token" }, maxAttempts: 5 });
      await files.prepare();
      await expect(files.ensure("seg")).rejects.toMatchObject({ code: Code.Unauthenticated });
      expect(started()).toHaveLength(1);
    });

    it("stops at close(): a waiting ensure fails with ExtensionFilesClosedError and no staging is left", async () => {
      const { files } = await openOnDownStore({ maxAttempts: 50, initialBackoffMs: 60_000 });
      const firstFailure = nextEvent((e) => e.type === "download_failed");
      const attempt = files.ensure("seg");
      await firstFailure;
      await files.close();
      await expect(attempt).rejects.toThrow(ExtensionFilesClosedError);
      await expect(files.ensure("hstore")).rejects.toThrow(ExtensionFilesClosedError);
      expect((await readdir(dirs.sharedir)).filter((f) => f.startsWith("."))).toEqual([]);
    });
  });

  describe("background downloads", () => {
    it("fetch every allowed extension, those installed in a database first", async () => {
      const files = open({ backgroundConcurrency: 1 });
      await files.prepare();
      const summary = await files.startBackground(async () => ["seg", "plpgsql", "hstore"]);
      expect(summary.failed).toEqual([]);
      expect(summary.installed.slice().sort()).toEqual(published);
      expect(started().slice(0, 2).map((e) => [e.extension, e.priority])).toEqual([
        ["seg", "installed"],
        ["hstore", "installed"],
      ]);
      expect(started().slice(2).every((e) => e.priority === "background")).toBe(true);
    });

    it("let an on-demand request jump the queue", async () => {
      const files = open({ backgroundConcurrency: 1 });
      await files.prepare();
      const firstStarted = nextEvent((e) => e.type === "download_started");
      const background = files.startBackground(async () => []);
      expect(await firstStarted).toMatchObject({ extension: "citext", priority: "background" });
      const segStarted = nextEvent((e) => e.type === "download_started" && e.extension === "seg");
      const onDemand = files.ensure("seg");
      await segStarted;
      // seg was last in the queue (name order); it started at once, before the ones queued ahead of it
      expect(started().map((e) => e.extension)).toEqual(["citext", "seg"]);
      expect(started()[1]).toMatchObject({ priority: "on_demand" });
      await onDemand;
      expect((await background).failed).toEqual([]);
    });

    it("go on when listing the installed extensions fails", async () => {
      const files = open({ backgroundConcurrency: 2 });
      await files.prepare();
      const summary = await files.startBackground(async () => {
        throw new Error("database is down");
      });
      expect(summary.installed.slice().sort()).toEqual(published);
    });
  });

  describe("options", () => {
    it("refuses remote_extensions that list an extension without extension_data, naming the field", () => {
      const broken: RemoteExtensions = { ...remoteExtensions, publicExtensions: [...remoteExtensions.publicExtensions, "ghost"] };
      expect(() => open({ remoteExtensions: broken })).toThrow(SpecError);
      expect(() => open({ remoteExtensions: broken })).toThrow(
        `remote_extensions.public_extensions[${remoteExtensions.publicExtensions.length}]: extension "ghost" has no entry in remote_extensions.extension_data`,
      );
    });

    it.each(["../../lib/plpgsql.so", "hstore.control", "citext.sql"])("refuses a control_data key %s that is not one of the extension's control files", (key) => {
      const citext = remoteExtensions.extensionData["citext"]!;
      const broken: RemoteExtensions = {
        ...remoteExtensions,
        extensionData: { ...remoteExtensions.extensionData, citext: { ...citext, controlData: { ...citext.controlData, [key]: "x" } } },
      };
      expect(() => open({ remoteExtensions: broken })).toThrow(SpecError);
      expect(() => open({ remoteExtensions: broken })).toThrow(`remote_extensions.extension_data.citext.control_data: key ${JSON.stringify(key)} is refused`);
    });

    it("needs the ExtensionStore address when remote_extensions allows anything", () => {
      expect(() => open({ extensionStore: undefined })).toThrow("pgmesh.extension_store: is needed to download the bundles of remote_extensions");
    });
  });
});

describe("extension_server route", () => {
  let server: ServerHandle;
  let files: ExtensionFiles;
  let root: string;

  beforeAll(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), "pgmesh-ext-route-"));
    const dirs = { sharedir: path.join(root, "share"), pkglibdir: path.join(root, "lib") };
    await mkdir(path.join(dirs.sharedir, "extension"), { recursive: true });
    await mkdir(dirs.pkglibdir, { recursive: true });
    await copyFile("/usr/share/postgresql/15/extension/pg_trgm.control", path.join(dirs.sharedir, "extension", "pg_trgm.control"));
    const logger = pino({ level: "silent" });
    files = new ExtensionFiles({ dirs, logger });
    server = await startServer({ port: 0, host: "0.0.0.0", services: [], auth: { insecure: true }, logger, fallback: createExtensionServerRoute(files, logger) });
  });

  afterAll(async () => {
    await server?.close();
    await files?.close();
    await rm(root, { recursive: true, force: true });
  });

  const post = (pathAndQuery: string, host = "127.0.0.1") =>
    fetch(`http://${host}:${server.address.port}${pathAndQuery}`, { method: "POST" });

  it("answers 200 when the files are present", async () => {
    const res = await post("/extension_server/pg_trgm");
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('extension "pg_trgm" is present (extension "pg_trgm")\n');
  });

  it("answers 403 with the reason for a name the compute may not use", async () => {
    const res = await post("/extension_server/hypopg?is_library=true");
    expect(res.status).toBe(403);
    expect(await res.text()).toMatch(/^library "hypopg" is not available to this compute/);
  });

  it("answers 400 for a malformed name", async () => {
    const res = await post("/extension_server/..%2Fetc");
    expect(res.status).toBe(400);
    expect(await res.text()).toMatch(/^extension name "..\/etc" is not valid/);
  });

  it("answers 400 to a request target that is not a URL, before any route parses it", async () => {
    const status = await new Promise<string>((resolve, reject) => {
      const socket = connect(server.address.port, "127.0.0.1", () => {
        socket.end("POST http://compute:99999/extension_server/pg_trgm HTTP/1.1\r\nhost: compute\r\ncontent-length: 0\r\n\r\n");
      });
      let text = "";
      socket.setEncoding("utf8");
      socket.on("data", (chunk: string) => (text += chunk));
      socket.on("end", () => resolve(text.split("\r\n")[0]!));
      socket.on("error", reject);
    });
    expect(status).toBe("HTTP/1.1 400 Bad Request");
  });

  it("answers 405 to anything but POST", async () => {
    const res = await fetch(`http://127.0.0.1:${server.address.port}/extension_server/pg_trgm`);
    expect(res.status).toBe(405);
    expect(res.headers.get("allow")).toBe("POST");
  });

  describe("on a network", () => {
    // This process is a host on the network (the bridge's address); `other` is another host.
    let network: VirtualNetwork;
    let other: VirtualHost;

    beforeAll(async () => {
      network = new VirtualNetwork();
      other = await network.addHost("other");
    });

    afterAll(async () => {
      await network?.remove();
    });

    it("serves a caller on this host that reaches it by a non-loopback address", async () => {
      const res = await post("/extension_server/pg_trgm", network.address);
      expect(res.status).toBe(200);
    });

    it("refuses callers on another host", async () => {
      const { stdout } = await execa(other.launcher[0]!, [...other.launcher.slice(1), process.execPath, "-e",
        `fetch("http://${network.address}:${server.address.port}/extension_server/pg_trgm", { method: "POST" })
          .then(async (res) => console.log(res.status, await res.text()))`]);
      expect(stdout).toMatch(new RegExp(`^403 /extension_server/ serves the compute's own Postgres only; ${other.address} is not an address of this host`));
    });
  });
});

describe("readPgInstallDirs", () => {
  it("reads Debian's dirs from its pg_config", async () => {
    expect(await readPgInstallDirs(systemPgBinaries(15))).toEqual({
      sharedir: "/usr/share/postgresql/15",
      pkglibdir: "/usr/lib/postgresql/15/lib",
    });
  });

  it("reads a copied install's own dirs, not the system ones", async () => {
    const install = await createScratchInstall([]);
    try {
      expect(await readPgInstallDirs(install.binaries)).toEqual(install.dirs);
    } finally {
      await install.remove();
    }
  });
});
