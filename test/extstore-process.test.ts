import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";
import { createClient } from "@connectrpc/connect";
import { execa } from "execa";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { ExtensionStoreService, ReviewDecision, Visibility } from "../gen/pgmesh/extensionstore/v1/extension_store_pb.js";
import { createClientTransport } from "../src/server/index.js";
import { collectDownload, sha256Of } from "./fixtures/extstore/extstore-harness.js";
import { createTestKeys, type TestKeys } from "./helpers/test-keys.js";

const storeBinary = resolve(import.meta.dirname, "../dist/cmd/extension-store.js");
const packBinary = resolve(import.meta.dirname, "../dist/cmd/pgmesh-pack-extension.js");

/** Stores this file spawned that have not exited: a failed test must not leave one behind. */
const running = new Set<ChildProcess>();

interface StoreProcess {
  readonly child: ChildProcess;
  readonly url: string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Spawns `node dist/cmd/extension-store.js` on a free port and waits for its "extension-store serving" line. */
async function spawnStore(args: string[]): Promise<StoreProcess> {
  const child = spawn(process.execPath, [storeBinary, "--listen", "127.0.0.1:0", ...args], { stdio: ["ignore", "pipe", "pipe"] });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) =>
    child.once("exit", (code, signal) => done({ code, signal })),
  );
  running.add(child);
  void exited.then(() => running.delete(child));
  let output = "";
  child.stderr!.on("data", (data: Buffer) => (output += data.toString()));
  const url = await new Promise<string>((done, fail) => {
    const lines = createInterface({ input: child.stdout! });
    lines.on("line", (line) => {
      output += line + "\n";
      const entry = JSON.parse(line) as { msg?: string; url?: string };
      if (entry.msg === "extension-store serving" && entry.url) done(entry.url);
    });
    void exited.then(({ code }) => fail(new Error(`extension-store exited with ${code} before serving:\n${output}`)));
  });
  return { child, url, exited };
}

describe("extension-store and pgmesh-pack-extension processes", () => {
  let keys: TestKeys;
  let work: string;

  beforeAll(async () => {
    for (const binary of [storeBinary, packBinary]) {
      if (!existsSync(binary)) throw new Error(`${binary} is missing: build with 'npx tsc -p tsconfig.json' (scripts/setup.sh does)`);
    }
    keys = await createTestKeys();
    work = await mkdtemp(join(tmpdir(), "pgmesh-extstore-proc-"));
  });
  afterEach(async () => {
    for (const child of running) {
      const exited = new Promise((done) => child.once("exit", done));
      if (child.kill("SIGKILL")) await exited;
    }
  });
  afterAll(async () => {
    await keys?.remove();
    await rm(work, { recursive: true, force: true });
  });

  it("publishes with the packer, downloads through a cache-mode process, and exits 0 on SIGTERM", async () => {
    const storage = join(work, "store");
    const store = await spawnStore(["--storage", pathToFileURL(storage).href, "--auth-keys", keys.jwksPath]);
    const address = new URL(store.url).host;
    const packed = await execa(process.execPath, [
      packBinary, "--from-pg-config", "hstore", "--out", join(work, "hstore.tar"),
      "--publish", address, "--token", await keys.mint({ scope: "admin" }),
    ]);
    const summary = JSON.parse(packed.stdout) as { name: string; sha256: string; published: { reviewState: string } };
    expect(summary).toMatchObject({ name: "hstore", published: { reviewState: "PENDING" } });

    const admin = createClient(ExtensionStoreService, createClientTransport({ baseUrl: store.url, token: await keys.mint({ scope: "admin" }) }));
    await admin.reviewExtension({ name: "hstore", sha256: summary.sha256, decision: ReviewDecision.APPROVE });
    const { token } = await admin.issueDownloadToken({ tenantId: "t1", endpointId: "ep1", sha256: [summary.sha256] });

    // The store generated its download key into the storage dir; the cache verifies tokens with its public half.
    const cacheDir = join(work, "cache");
    const cache = await spawnStore([
      "--upstream", address, "--cache-dir", cacheDir, "--cache-bytes", String(64 << 20),
      "--download-keys", join(storage, "download-keys", "public-keys.jwks.json"), "--auth-keys", keys.jwksPath,
    ]);
    const viaCache = createClient(ExtensionStoreService, createClientTransport({ baseUrl: cache.url }));
    const download = await collectDownload(viaCache.downloadBundle({ sha256: summary.sha256, downloadToken: token }));
    expect(sha256Of(download.bytes)).toBe(summary.sha256);
    expect(await readdir(cacheDir)).toContain(`${summary.sha256}.tar`);

    for (const p of [cache, store]) {
      p.child.kill("SIGTERM");
      expect(await p.exited).toEqual({ code: 0, signal: null });
    }
  });

  it("says in one line why the store refused a publish, without a stack trace", async () => {
    const store = await spawnStore(["--storage", pathToFileURL(join(work, "refusing-store")).href, "--auth-keys", keys.jwksPath]);
    const result = await execa(process.execPath, [
      packBinary, "--from-pg-config", "hstore", "--out", join(work, "refused.tar"),
      "--publish", new URL(store.url).host, "--token", await keys.mint({ scope: "control_plane" }),
    ], { reject: false });
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toMatch(/^pgmesh-pack-extension: publishing to the extension store at 127\.0\.0\.1:\d+ failed: \[permission_denied\] .+\n?$/);
  });

  it("sweeps the spool file of a publish it was killed (SIGKILL) in, at restart", async () => {
    const spoolDir = join(work, "spool-killed");
    await mkdir(spoolDir);
    const args = ["--storage", pathToFileURL(join(work, "store-killed")).href, "--spool-dir", spoolDir, "--insecure-no-auth"];
    const first = await spawnStore(args);
    const client = createClient(ExtensionStoreService, createClientTransport({ baseUrl: first.url }));
    // A header and 1 MiB of a bundle, then a stall: the store is killed while it spools.
    const publish = client.publishExtension(
      (async function* () {
        yield { msg: { case: "header" as const, value: { name: "stalled", pgMajors: [15], visibility: Visibility.PUBLIC } } };
        yield { msg: { case: "chunk" as const, value: new Uint8Array(1024 * 1024) } };
        await new Promise(() => undefined);
      })(),
    ).catch(() => undefined);
    await vi.waitFor(
      async () => expect((await readdir(spoolDir)).filter((name) => name.endsWith(".part"))).toHaveLength(1),
      { timeout: 30_000, interval: 20 },
    );
    first.child.kill("SIGKILL");
    expect(await first.exited).toEqual({ code: null, signal: "SIGKILL" });
    await publish;

    const second = await spawnStore(args);
    expect(await readdir(spoolDir)).toEqual([]);
    second.child.kill("SIGTERM");
    expect(await second.exited).toEqual({ code: 0, signal: null });
  });

  it.each([
    ["--spool-dir", "that does not exist", (dir: string) => ["--spool-dir", join(dir, "missing")], /--spool-dir .*missing.* does not exist/],
    ["--spool-dir", "that is a file", (dir: string) => ["--spool-dir", join(dir, "a-file")], /--spool-dir .*a-file.* is not a directory/],
    ["--storage", "under a file", (dir: string) => ["--storage", pathToFileURL(join(dir, "a-file", "store")).href], /--storage .*a-file\/store.* cannot be created/],
  ])("refuses to start with a %s %s, naming the flag (exit code 2)", async (_flag, _what, argsOf, message) => {
    await writeFile(join(work, "a-file"), "");
    const args = ["--storage", pathToFileURL(join(work, "store-refused")).href, "--insecure-no-auth", "--listen", "127.0.0.1:0", ...argsOf(work)];
    const result = await execa(process.execPath, [storeBinary, ...args], { reject: false, timeout: 30_000 });
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(message);
  });

  it("refuses s3:// storage without --signing-key, saying what to give", async () => {
    const result = await execa(process.execPath, [storeBinary, "--storage", "s3://bucket/x", "--insecure-no-auth", "--listen", "127.0.0.1:0"], {
      reject: false,
    });
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(/give --signing-key FILE/);
  });

  it("refuses --upstream without --download-keys", async () => {
    const result = await execa(process.execPath, [storeBinary, "--upstream", "127.0.0.1:7101", "--insecure-no-auth"], { reject: false });
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(/--download-keys/);
  });

  it("refuses to pack without a source", async () => {
    const result = await execa(process.execPath, [packBinary, "--out", join(work, "x.tar")], { reject: false });
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(/--deb FILE.deb or --from-pg-config NAME/);
  });
});
