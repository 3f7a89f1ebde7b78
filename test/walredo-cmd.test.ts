import { spawn, execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { createInterface } from "node:readline";
import { promisify } from "node:util";
import { createClient } from "@connectrpc/connect";
import { beforeAll, describe, expect, it } from "vitest";
import { WalRedoService } from "../gen/pgmesh/walredo/v1/walredo_pb.js";
import { createClientTransport } from "../src/server/index.js";
import { processTree, stillRunning } from "./walredo-harness.js";
import { ensureTestBundle } from "./bundle-fixture.js";

const binary = resolve(import.meta.dirname, "../dist/cmd/walredo.js");
const execFileAsync = promisify(execFile);

describe("walredo binary", () => {
  let bundleDir: string;

  beforeAll(async () => {
    if (!existsSync(binary)) throw new Error(`${binary} is missing: build with 'npx tsc -p tsconfig.json' (scripts/setup.sh does)`);
    bundleDir = await ensureTestBundle();
  });

  it("lists its flags with their PGMESH_ variables under --help", async () => {
    const { stdout } = await execFileAsync(process.execPath, [binary, "--help"]);
    for (const flag of ["--listen", "--bundle", "--auth-keys", "--insecure-no-auth", "--idle-timeout-ms", "--request-timeout-ms", "--max-processes", "--queue-timeout-ms", "--max-processes-per-tenant", "--user"]) {
      expect(stdout).toContain(flag);
    }
    expect(stdout).toContain("PGMESH_MAX_PROCESSES_PER_TENANT");
  });

  it("has no blob storage flags, and refuses --storage instead of ignoring it", async () => {
    const { stdout } = await execFileAsync(process.execPath, [binary, "--help"]);
    expect(stdout).not.toMatch(/--storage|--s3-conditional-writes/);
    const run = execFileAsync(process.execPath, [binary, "--insecure-no-auth", "--bundle", bundleDir, "--storage", "file:///tmp/unused"]);
    await expect(run).rejects.toMatchObject({ code: 2, stderr: expect.stringMatching(/Unknown option '--storage'/) });
  });

  it("exits 2 naming the flag when the options cannot work", async () => {
    const run = execFileAsync(process.execPath, [binary, "--insecure-no-auth", "--bundle", bundleDir, "--max-processes", "2", "--max-processes-per-tenant", "3"]);
    await expect(run).rejects.toMatchObject({ code: 2, stderr: expect.stringMatching(/maxProcessesPerTenant \(--max-processes-per-tenant\): 3 exceeds maxProcesses 2/) });
  });

  it("exits 2 when the bundle is missing, saying how to build it", async () => {
    const run = execFileAsync(process.execPath, [binary, "--insecure-no-auth", "--bundle", "/nonexistent/bundle"]);
    await expect(run).rejects.toMatchObject({ code: 2, stderr: expect.stringMatching(/no Postgres bundle at \/nonexistent\/bundle: build one with `bundle --out/) });
  });

  it("serves Ping, and on SIGTERM drains, kills every walredo process and exits 0", async () => {
    const child = spawn(process.execPath, [binary, "--listen", "127.0.0.1:0", "--insecure-no-auth", "--bundle", bundleDir], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    const exited = new Promise<{ code: number | null }>((r) => child.once("exit", (code) => r({ code })));
    const url = await new Promise<string>((resolveUrl, reject) => {
      createInterface({ input: child.stdout! }).on("line", (line) => {
        const entry = JSON.parse(line) as { msg?: string; url?: string };
        if (entry.msg === "walredo serving" && entry.url) resolveUrl(entry.url);
      });
      void exited.then(({ code }) => reject(new Error(`walredo exited with ${code} before serving`)));
    });
    const client = createClient(WalRedoService, createClientTransport({ baseUrl: url }));
    await Promise.all(["c1", "c2"].map((tenantId) => client.ping({ tenantId, pgMajor: 15 })));
    const tree = await processTree([child.pid!]);
    expect(tree.length).toBeGreaterThan(2);
    child.kill("SIGTERM");
    expect(await exited).toEqual({ code: 0 });
    expect(await stillRunning(tree)).toEqual([]);
  });
});
