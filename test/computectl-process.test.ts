import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { randomBytes } from "node:crypto";
import { open, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { createInterface } from "node:readline";
import { build } from "rolldown";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { specJson, traversableTempDir } from "./computectl-fixtures.js";
import { segmentIdOfLockFile, sysvSegments, type SysvSegment } from "./helpers/sysv-segments.js";

const root = path.resolve(import.meta.dirname, "..");

/** A compute-ctl process and the JSON log lines it has written so far. */
interface ComputeCtlProcess {
  readonly child: ChildProcess;
  readonly pgdata: string;
  /** Resolves with the first log line satisfying `predicate`. */
  logLine(predicate: (line: Record<string, unknown>) => boolean): Promise<Record<string, unknown>>;
}

/** The System V segment a postmaster.pid names, if it still exists. */
async function segmentOf(postmasterPidFile: string): Promise<SysvSegment | undefined> {
  const id = segmentIdOfLockFile(postmasterPidFile);
  return (await sysvSegments()).find((s) => s.id === id);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("compute-ctl process", () => {
  let tmp: { dir: string; remove(): Promise<void> };
  let script: string;
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    tmp = await traversableTempDir("pgmesh-ctl-process-");
    // cmd/compute-ctl.ts as one ES module next to node_modules, so the child runs the code under test.
    script = path.join(root, ".pgmesh", "test-build", `compute-ctl-${randomBytes(4).toString("hex")}.mjs`);
    await build({
      input: path.join(root, "cmd/compute-ctl.ts"), platform: "node", external: [/^[^./]/], logLevel: "silent",
      write: true, output: { file: script, format: "esm" },
    });
  });

  afterAll(async () => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await rm(script, { force: true });
    await tmp.remove();
  });

  async function startComputeCtl(name: string): Promise<ComputeCtlProcess> {
    const dir = path.join(tmp.dir, name);
    const specFile = path.join(tmp.dir, `${name}.json`);
    await writeFile(specFile, JSON.stringify(specJson()));
    const pgdata = path.join(dir, "pgdata");
    const child = spawn(process.execPath, [
      script, "-D", pgdata, "-S", specFile, "-b", "/usr/lib/postgresql/15/bin/postgres",
      "--listen", "127.0.0.1:0", "--insecure-no-auth", "--no-extensions", "--log-level", "info",
    ], { stdio: ["ignore", "pipe", "inherit"] });
    children.push(child);
    const lines: Record<string, unknown>[] = [];
    const waiters: { predicate: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }[] = [];
    createInterface({ input: child.stdout! }).on("line", (text) => {
      const line = JSON.parse(text) as Record<string, unknown>;
      lines.push(line);
      for (const w of [...waiters]) if (w.predicate(line)) w.resolve(line);
    });
    return {
      child,
      pgdata,
      logLine: (predicate) => {
        const seen = lines.find(predicate);
        if (seen) return Promise.resolve(seen);
        return new Promise((resolve, reject) => {
          waiters.push({ predicate, resolve });
          child.once("exit", (code, signal) => reject(new Error(`compute-ctl exited (code ${code}, signal ${signal}) before the log line`)));
        });
      },
    };
  }

  const running = (l: Record<string, unknown>) => l.msg === "compute state changed" && l.state === "running";

  it("leaves no Postgres behind when compute-ctl is killed with SIGKILL, and the next start removes the shared memory it left", async () => {
    const first = await startComputeCtl("sigkill");
    await first.logLine(running);
    const pidFile = await readFile(path.join(first.pgdata, "postmaster.pid"), "utf8");
    const postmasterPid = Number(pidFile.split("\n")[0]);
    expect(isAlive(postmasterPid)).toBe(true);
    first.child.kill("SIGKILL");
    await once(first.child, "exit");
    // The kernel delivers the parent-death signal; a process we did not start has no exit event to await.
    await vi.waitFor(() => expect(isAlive(postmasterPid)).toBe(false), { timeout: 30_000, interval: 20 });
    // The dead postmaster's children detach as they notice; the segment itself stays.
    await vi.waitFor(async () => expect((await segmentOf(pidFile))?.attached).toBe(0), { timeout: 30_000, interval: 20 });

    // Postgres keys its segment by PGDATA's inode and removes a stale one under its own key at start-up;
    // holding the old directory open keeps its inode from being reused for the new PGDATA.
    const oldPgdata = await open(first.pgdata, "r");
    try {
      const second = await startComputeCtl("sigkill");
      await second.logLine(running);
      expect(await segmentOf(pidFile)).toBeUndefined();
      second.child.kill("SIGTERM");
      const [code] = await once(second.child, "exit");
      expect(code).toBe(0);
    } finally {
      await oldPgdata.close();
    }
  });

  it("terminates the compute on SIGTERM and exits 0", async () => {
    const ctl = await startComputeCtl("sigterm");
    await ctl.logLine(running);
    const postmasterPid = Number((await readFile(path.join(ctl.pgdata, "postmaster.pid"), "utf8")).split("\n")[0]);
    ctl.child.kill("SIGTERM");
    const [code] = await once(ctl.child, "exit");
    expect(code).toBe(0);
    await ctl.logLine((l) => l.msg === "compute state changed" && l.state === "terminated");
    expect(isAlive(postmasterPid)).toBe(false);
  });
});
