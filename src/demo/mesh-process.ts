import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { open } from "node:fs/promises";
import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { createClient } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { createClientTransport } from "../server/index.js";

export interface MeshProcessOptions {
  /** A binary in dist/cmd, e.g. "epufs". */
  readonly binary: string;
  /** The built dist/cmd directory (default: the one this module is built into). */
  readonly cmdDir?: string;
  readonly args: readonly string[];
  /** Where the process's stdout and stderr (pino JSON) go. */
  readonly logFile: string;
  /** http://host:port the process serves; health is checked there. */
  readonly url: string;
  readonly startTimeoutMs?: number;
  /** Variables added to this process's environment (e.g. AWS_* for s3:// storage). */
  readonly env?: Readonly<Record<string, string>>;
  /** A command prefix the binary runs under, e.g. `ip netns exec HOST` to run it on another network namespace. */
  readonly launcher?: readonly string[];
}

const distCmd = path.resolve(import.meta.dirname, "..", "..", "cmd");

/** One pgmesh server the demo started as a child process. */
export class MeshProcess {
  readonly exited: Promise<number | null>;

  constructor(readonly options: MeshProcessOptions, private readonly child: ChildProcess) {
    this.exited = once(child, "exit").then(([code]) => code as number | null);
  }

  get name(): string {
    return this.options.binary;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The process id (the binary's own, also under a launcher that execs it). */
  get pid(): number {
    return this.child.pid!;
  }

  /** SIGTERM (the binaries drain and exit 0), then waits for the exit. */
  async stop(): Promise<number | null> {
    return this.kill("SIGTERM");
  }

  /** Sends the signal (SIGKILL: a crash, no draining) and waits for the exit. */
  async kill(signal: NodeJS.Signals): Promise<number | null> {
    if (this.running) this.child.kill(signal);
    return this.exited;
  }
}

/** Starts a binary and resolves once its grpc.health.v1 check says SERVING. */
export async function startMeshProcess(options: MeshProcessOptions): Promise<MeshProcess> {
  const log = await open(options.logFile, "a");
  // A session of its own: a terminal's Ctrl-C (SIGINT to the whole foreground process group) reaches
  // only the demo, which stops the services in order; compute-ctl must save files while Epufs still serves.
  const [command, ...args] = [...(options.launcher ?? []), process.execPath, path.join(options.cmdDir ?? distCmd, `${options.binary}.js`), ...options.args];
  const child = spawn(command!, args, {
    stdio: ["ignore", log.fd, log.fd],
    env: { ...process.env, ...options.env },
    detached: true,
  });
  await log.close();
  const mesh = new MeshProcess(options, child);
  try {
    await waitUntilServing(mesh, options.startTimeoutMs ?? 30_000);
  } catch (err) {
    await mesh.stop();
    throw err;
  }
  return mesh;
}

async function waitUntilServing(mesh: MeshProcess, timeoutMs: number): Promise<void> {
  const health = createClient(Health, createClientTransport({ baseUrl: mesh.options.url, defaultTimeoutMs: 1000 }));
  const deadline = Date.now() + timeoutMs;
  // Nothing announces that the port is bound; ask until it answers.
  while (Date.now() < deadline) {
    if (!mesh.running) {
      throw new Error(`${mesh.name} exited with code ${await mesh.exited} during start-up; see ${mesh.options.logFile}`);
    }
    try {
      const { status } = await health.check({});
      if (status === HealthCheckResponse_ServingStatus.SERVING) return;
    } catch {
      // not listening yet
    }
    await delay(50);
  }
  throw new Error(`${mesh.name} did not become healthy at ${mesh.options.url} within ${timeoutMs} ms; see ${mesh.options.logFile}`);
}
