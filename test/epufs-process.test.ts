import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";
import { createClient } from "@connectrpc/connect";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { EpufsService } from "../gen/pgmesh/epufs/v1/epufs_pb.js";
import { openBlobStore } from "../src/blob/index.js";
import { createClientTransport } from "../src/server/index.js";
import { connectErrorOf, content, endpointRef, getFile, putFile, type EpufsClient } from "./helpers/epufs-calls.js";
import { startS3rver, type S3rverHandle } from "./helpers/s3rver.js";
import { createTestKeys, type TestKeys } from "./helpers/test-keys.js";

const binary = resolve(import.meta.dirname, "../dist/cmd/epufs.js");
const ep = endpointRef("tenant1", "timeline1", "ep-one");
const PATH = "autoprewarm.blocks";

interface EpufsProcess {
  readonly child: ChildProcess;
  readonly url: string;
  /** Resolves when the process logs a line with this msg. */
  logged(msg: string): Promise<void>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Spawns `node dist/cmd/epufs.js` on a free port and waits for its "epufs serving" log line. */
async function spawnEpufs(args: string[], env: Record<string, string>): Promise<EpufsProcess> {
  const child = spawn(process.execPath, [binary, "--listen", "127.0.0.1:0", ...args], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolveExit) =>
    child.once("exit", (code, signal) => resolveExit({ code, signal })),
  );
  running.add(child);
  void exited.then(() => running.delete(child));
  let output = "";
  child.stderr!.on("data", (data: Buffer) => (output += data.toString()));
  const lines = createInterface({ input: child.stdout! });
  const logged = (msg: string): Promise<void> =>
    new Promise((resolveLogged) => {
      const onLine = (line: string) => {
        if ((JSON.parse(line) as { msg?: string }).msg !== msg) return;
        lines.off("line", onLine);
        resolveLogged();
      };
      lines.on("line", onLine);
    });
  const url = await new Promise<string>((resolveUrl, reject) => {
    lines.on("line", (line) => {
      output += line + "\n";
      const entry = JSON.parse(line) as { msg?: string; url?: string };
      if (entry.msg === "epufs serving" && entry.url) resolveUrl(entry.url);
    });
    void exited.then(({ code }) => reject(new Error(`epufs exited with ${code} before serving:\n${output}`)));
  });
  return { child, url, exited, logged };
}

function clientOf(url: string, token: string): EpufsClient {
  return createClient(EpufsService, createClientTransport({ baseUrl: url, ...(token ? { token } : {}) }));
}

/** Resolves once `dir` holds a file ending in ".part" of at least `bytes` bytes; fails after 60 s. */
async function spoolFileReaches(dir: string, bytes: number): Promise<void> {
  await vi.waitFor(
    async () => {
      for (const name of existsSync(dir) ? await readdir(dir) : []) {
        if (!name.endsWith(".part")) continue;
        const size = await stat(join(dir, name)).then((s) => s.size, () => 0);
        if (size >= bytes) return;
      }
      throw new Error(`no spool file of ${bytes} bytes in ${dir} yet`);
    },
    { timeout: 60_000, interval: 20 },
  );
}

let keys: TestKeys;
let s3rver: S3rverHandle;
/** Servers this file spawned that have not exited: a failed test must not leave one behind. */
const running = new Set<ChildProcess>();

beforeAll(async () => {
  if (!existsSync(binary)) throw new Error(`${binary} is missing: build with 'npx tsc -p tsconfig.json' (scripts/setup.sh does)`);
  keys = await createTestKeys();
  s3rver = await startS3rver();
});
afterEach(async () => {
  for (const child of running) {
    const exited = new Promise((resolveExit) => child.once("exit", resolveExit));
    if (child.kill("SIGKILL")) await exited;
  }
});
afterAll(async () => {
  await s3rver?.stop();
  await keys?.remove();
});

describe.each(["local directory", "S3 (s3rver)"])("epufs process over %s", (backend) => {
  it("keeps the previous version intact when killed with SIGKILL mid-upload, and sweeps its spool file at restart", async () => {
    const work = await mkdtemp(join(tmpdir(), "pgmesh-epufs-proc-"));
    const isS3 = backend.startsWith("S3");
    const storage = isS3 ? s3rver.url(`killed-${process.pid}-${Date.now()}`) : pathToFileURL(join(work, "store")).href;
    // The S3 backend spools uploads in the OS temp dir: give the child its own.
    const env = isS3 ? { ...s3rver.env, TMPDIR: join(work, "tmp") } : {};
    const spoolDir = isS3 ? join(work, "tmp", "pgmesh-blob-spool") : join(work, "store", "tmp");
    const args = ["--storage", storage, "--auth-keys", keys.jwksPath, "--log-level", "info"];
    const token = await keys.computeToken("tenant1", "timeline1", "ep-one");
    try {
      await mkdir(join(work, "tmp"), { recursive: true });
      const first = await spawnEpufs(args, env);
      const previous = content(2 * 1024 * 1024, 1);
      await putFile(clientOf(first.url, token), ep, PATH, previous, { chunkBytes: 256 * 1024 });

      // Upload a new version: send 1 MiB, then stall; kill the server once it has spooled that much.
      const upload = connectErrorOf(clientOf(first.url, token).putFile(
        (async function* () {
          yield { msg: { case: "header" as const, value: { endpoint: ep, path: PATH } } };
          const next = content(3 * 1024 * 1024, 2);
          for (let offset = 0; offset < 1024 * 1024; offset += 256 * 1024) {
            yield { msg: { case: "chunk" as const, value: next.subarray(offset, offset + 256 * 1024) } };
          }
          await new Promise(() => undefined);
        })(),
      ));
      await spoolFileReaches(spoolDir, 1024 * 1024);
      first.child.kill("SIGKILL");
      expect(await first.exited).toEqual({ code: null, signal: "SIGKILL" });
      expect((await upload).code).toBeDefined();

      const second = await spawnEpufs(args, env);
      // The killed server's spool file is swept at start: its owner is gone.
      expect((await readdir(spoolDir)).filter((name) => name.endsWith(".part"))).toEqual([]);
      const client = clientOf(second.url, token);
      const got = await getFile(client, ep, PATH);
      expect(got.data.equals(previous)).toBe(true);
      const listed = await client.listFiles({ endpoint: ep });
      expect(listed.files.map((file) => [file.path, file.size])).toEqual([[PATH, BigInt(previous.length)]]);
      const admin = clientOf(second.url, await keys.mint({ scope: "admin" }));
      expect((await admin.deleteTenant({ tenantId: "tenant1" })).deleted).toMatchObject({ objects: 1n });

      second.child.kill("SIGTERM");
      expect(await second.exited).toEqual({ code: 0, signal: null });
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });
});

describe("epufs shutdown", () => {
  it("finishes an upload in flight on SIGTERM, then exits 0", async () => {
    const work = await mkdtemp(join(tmpdir(), "pgmesh-epufs-term-"));
    try {
      const args = ["--storage", pathToFileURL(join(work, "store")).href, "--insecure-no-auth"];
      const server = await spawnEpufs(args, {});
      const draining = server.logged("draining");
      const data = content(512 * 1024, 3);
      const upload = clientOf(server.url, "").putFile(
        (async function* () {
          yield { msg: { case: "header" as const, value: { endpoint: ep, path: PATH } } };
          yield { msg: { case: "chunk" as const, value: data.subarray(0, 256 * 1024) } };
          await spoolFileReaches(join(work, "store", "tmp"), 256 * 1024);
          server.child.kill("SIGTERM");
          await draining;
          yield { msg: { case: "chunk" as const, value: data.subarray(256 * 1024) } };
        })(),
      );
      expect((await upload).file?.size).toBe(BigInt(data.length));
      expect(await server.exited).toEqual({ code: 0, signal: null });
      const store = await openBlobStore(pathToFileURL(join(work, "store")).href);
      expect((await store.list("")).items.map((item) => item.size)).toEqual([data.length]);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });
});

describe("epufs command line", () => {
  it("refuses to start without --auth-keys or --insecure-no-auth, exit code 2", async () => {
    const child = spawn(process.execPath, [binary, "--listen", "127.0.0.1:0"], { stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (data: Buffer) => (stderr += data.toString()));
    const code = await new Promise((resolveExit) => child.once("exit", resolveExit));
    expect(code).toBe(2);
    expect(stderr).toContain("give --auth-keys FILE to verify bearer tokens, or --insecure-no-auth");
  });

  it("refuses a --storage directory it cannot create, naming the flag, exit code 2", async () => {
    const work = await mkdtemp(join(tmpdir(), "pgmesh-epufs-proc-"));
    try {
      await writeFile(join(work, "a-file"), "");
      const storage = pathToFileURL(join(work, "a-file", "store")).href;
      const child = spawn(process.execPath, [binary, "--insecure-no-auth", "--listen", "127.0.0.1:0", "--storage", storage], {
        stdio: ["ignore", "pipe", "pipe"],
      });
      running.add(child);
      let stderr = "";
      child.stderr.on("data", (data: Buffer) => (stderr += data.toString()));
      expect(await new Promise((resolveExit) => child.once("exit", resolveExit))).toBe(2);
      expect(stderr).toMatch(/--storage ".*a-file\/store" cannot be created \(ENOTDIR\); give a writable directory/);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });

  it("reports a bad --max-file-bytes naming the flag, exit code 2", async () => {
    const child = spawn(process.execPath, [binary, "--insecure-no-auth", "--max-file-bytes", "0"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (data: Buffer) => (stderr += data.toString()));
    expect(await new Promise((resolveExit) => child.once("exit", resolveExit))).toBe(2);
    expect(stderr).toContain("--max-file-bytes must be a positive whole number of bytes, got 0");
  });
});
