import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdir, open, readFile } from "node:fs/promises";
import path from "node:path";
import { execa } from "execa";
import { setTimeout as delay } from "node:timers/promises";
import { removeOrphanedShmem } from "./orphaned-shmem.js";
import { chownTree, runAsPrefix, type OsUser } from "./os-user.js";
import { outputTail } from "./output-tail.js";
import { pgProgram, type PgBinaries } from "./pg-binaries.js";

export interface InitdbOptions {
  readonly binaries: PgBinaries;
  readonly dataDir: string;
  readonly user: OsUser;
  /** Bootstrap superuser; Neon's computes use cloud_admin. */
  readonly superuser?: string;
  readonly locale?: string;
  readonly encoding?: string;
  /** Extra initdb arguments, e.g. ["--no-sync"]. */
  readonly extraArgs?: readonly string[];
}

/** Runs initdb as the unprivileged user into a fresh dataDir. */
export async function initdb(options: InitdbOptions): Promise<void> {
  await mkdir(options.dataDir, { recursive: true, mode: 0o700 });
  await chownTree(options.dataDir, options.user);
  await runProgramAs(options.user, pgProgram(options.binaries, "initdb"), [
    "-D", options.dataDir,
    "-U", options.superuser ?? "cloud_admin",
    "--locale", options.locale ?? "C.UTF-8",
    "--encoding", options.encoding ?? "UTF8",
    "--auth", "trust",
    ...(options.extraArgs ?? []),
  ]);
}

export type ShutdownMode = "smart" | "fast" | "immediate";

const shutdownSignal: Record<ShutdownMode, NodeJS.Signals> = {
  smart: "SIGTERM",
  fast: "SIGINT",
  immediate: "SIGQUIT",
};

export interface StartPostgresOptions {
  readonly binaries: PgBinaries;
  readonly dataDir: string;
  readonly user: OsUser;
  readonly port: number;
  /** Directory for the Unix socket; must be writable by the user. */
  readonly socketDir: string;
  /** Server log; Postgres's stdout and stderr go here. */
  readonly logFile: string;
  readonly listenAddress?: string;
  /** `-c name=value` settings. */
  readonly settings?: Readonly<Record<string, string>>;
  readonly startTimeoutMs?: number;
}

export class PostgresStartError extends Error {
  constructor(message: string, readonly logTail: string) {
    super(`${message}${logTail ? `; log tail:\n${logTail}` : ""}`);
    this.name = "PostgresStartError";
  }
}

/** How long a killed postmaster's children get to detach from its shared memory. */
const ORPHANED_SHMEM_WAIT_MS = 10_000;

/** A postmaster this process started and supervises. */
export class RunningPostgres {
  /**
   * Resolves once the postmaster is reaped and, if it died without cleaning
   * up (SIGKILL), its System V segment removed when its children let go.
   */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(
    private readonly child: ChildProcess,
    readonly options: StartPostgresOptions,
  ) {
    this.exited = once(child, "exit").then(async ([code, signal]) => {
      if (signal !== null && child.pid !== undefined) {
        await removeOrphanedShmem(options.dataDir, { creatorPid: child.pid, waitMs: ORPHANED_SHMEM_WAIT_MS }).catch(() => false);
      }
      return { code: code as number | null, signal: signal as NodeJS.Signals | null };
    });
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get port(): number {
    return this.options.port;
  }

  get hasExited(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  /** A libpq URI over TCP loopback. */
  connectionUri(database = "postgres", user = "cloud_admin"): string {
    const host = this.options.listenAddress ?? "127.0.0.1";
    return `postgresql://${encodeURIComponent(user)}@${host}:${this.options.port}/${encodeURIComponent(database)}`;
  }

  /** Stops the postmaster with the given mode and waits for it to exit. */
  async stop(mode: ShutdownMode = "fast"): Promise<void> {
    if (!this.hasExited) this.child.kill(shutdownSignal[mode]);
    await this.exited;
  }

  async logTail(lines = 30): Promise<string> {
    return readTail(this.options.logFile, lines);
  }
}

/**
 * Starts `postgres` directly (not through pg_ctl) as the unprivileged user, so
 * this process is its parent and sees it exit; it resolves once
 * postmaster.pid says "ready" and fails fast, with the log tail, if Postgres
 * exits first.
 */
export async function startPostgres(options: StartPostgresOptions): Promise<RunningPostgres> {
  await mkdir(options.socketDir, { recursive: true });
  await chownTree(options.socketDir, options.user);
  const log = await open(options.logFile, "a");
  const settings = {
    listen_addresses: options.listenAddress ?? "127.0.0.1",
    ...options.settings,
  };
  const args = [
    ...runAsPrefix(options.user),
    pgProgram(options.binaries, "postgres"),
    "-D", options.dataDir,
    "-p", String(options.port),
    "-k", options.socketDir,
    ...Object.entries(settings).flatMap(([name, value]) => ["-c", `${name}=${value}`]),
  ];
  const child = spawn(args[0]!, args.slice(1), { stdio: ["ignore", log.fd, log.fd] });
  await log.close();
  const postgres = new RunningPostgres(child, options);
  await waitUntilReady(postgres, options.startTimeoutMs ?? 60_000);
  return postgres;
}

async function waitUntilReady(postgres: RunningPostgres, timeoutMs: number): Promise<void> {
  const pidFile = path.join(postgres.options.dataDir, "postmaster.pid");
  const deadline = Date.now() + timeoutMs;
  // postmaster.pid has no change notification that survives its rewrite; poll it briefly.
  for (;;) {
    if (postgres.hasExited) {
      const { code, signal } = await postgres.exited;
      throw new PostgresStartError(`postgres exited during start-up (code ${code}, signal ${signal})`, await postgres.logTail());
    }
    if (await readPmStatus(pidFile, postgres.pid) === "ready") return;
    if (Date.now() > deadline) {
      await postgres.stop("immediate");
      throw new PostgresStartError(`postgres was not ready after ${timeoutMs} ms`, await postgres.logTail());
    }
    await delay(5);
  }
}

/**
 * Line 8 of postmaster.pid (PM_STATUS): "starting", "ready", "stopping"…, if
 * line 1 is `pid` (not a file a killed postmaster left behind).
 */
async function readPmStatus(pidFile: string, pid: number): Promise<string | undefined> {
  try {
    const lines = (await readFile(pidFile, "utf8")).split("\n");
    return lines[0]?.trim() === String(pid) ? lines[7]?.trim() : undefined;
  } catch {
    return undefined;
  }
}

async function readTail(file: string, lines: number): Promise<string> {
  try {
    return outputTail(await readFile(file, "utf8"), lines);
  } catch {
    return "";
  }
}

/** Runs one program to completion as `user`; the error carries its output's last lines. */
export async function runProgramAs(user: OsUser, program: string, args: readonly string[]): Promise<string> {
  const prefix = runAsPrefix(user);
  const result = await execa(prefix[0]!, [...prefix.slice(1), program, ...args], { all: true, reject: false });
  if (result.exitCode !== 0) {
    throw new Error(`${path.basename(program)} failed with code ${result.exitCode}: ${outputTail(result.all, 10)}`);
  }
  return result.stdout;
}
