import { spawn, type ChildProcess } from "node:child_process";
import { resolve } from "node:path";
import { createInterface } from "node:readline";

/** A pgmesh service binary running in a child process. */
export interface ServiceProcess {
  readonly child: ChildProcess;
  /** The URL it logged in its "<service> serving" line. */
  readonly url: string;
  /** "127.0.0.1:PORT", as a compute spec names it. */
  readonly addr: string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGKILL, then wait for the exit. */
  kill(): Promise<void>;
}

/** Children spawned and not yet exited: stopAllServiceProcesses() kills what a failed test left. */
const running = new Set<ChildProcess>();

/**
 * Spawns `node dist/cmd/<service>.js --listen 127.0.0.1:0 ARGS…` and waits for
 * its "<service> serving" log line; rejects with its output if it exits first.
 */
export async function spawnServiceProcess(
  service: "epufs" | "extension-store",
  args: readonly string[],
  env: Record<string, string> = {},
): Promise<ServiceProcess> {
  const binary = resolve(import.meta.dirname, `../../dist/cmd/${service}.js`);
  const child = spawn(process.execPath, [binary, "--listen", "127.0.0.1:0", ...args], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.add(child);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolveExit) =>
    child.once("exit", (code, signal) => {
      running.delete(child);
      resolveExit({ code, signal });
    }),
  );
  let output = "";
  child.stderr!.on("data", (data: Buffer) => (output += data.toString()));
  const url = await new Promise<string>((resolveUrl, reject) => {
    createInterface({ input: child.stdout! }).on("line", (line) => {
      output += line + "\n";
      try {
        const entry = JSON.parse(line) as { msg?: string; url?: string };
        if (entry.msg === `${service} serving` && entry.url) resolveUrl(entry.url);
      } catch {
        // not a log line
      }
    });
    void exited.then(({ code, signal }) => reject(new Error(`${service} exited (${code ?? signal}) before serving:\n${output}`)));
  });
  const kill = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await exited;
  };
  return { child, url, addr: new URL(url).host, exited, kill };
}

/** Kills every service process still running (for afterEach/afterAll). */
export async function stopAllServiceProcesses(): Promise<void> {
  await Promise.all(
    [...running].map(
      (child) =>
        new Promise<void>((resolveExit) => {
          child.once("exit", () => resolveExit());
          if (!child.kill("SIGKILL")) resolveExit();
        }),
    ),
  );
}
