import { spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { diskFullLine } from "./disk-full-line.js";
import { DiskFullError, ImportCancelledError, ToolFailedError, type ImportPhase } from "./fast-import-errors.js";

export interface PgToolRun {
  readonly phase: ImportPhase;
  /** Absolute path of the program. */
  readonly program: string;
  readonly args: readonly string[];
  /** What the program works on, for messages (a redacted URI, a database name). */
  readonly target: string;
  /** Extra environment (PGPASSWORD); the rest is a small clean set, no inherited PG* variables. */
  readonly env?: Readonly<Record<string, string>>;
  /** The working directory, named when it runs out of space. */
  readonly workdir: string;
  /** Every line the program prints (stderr and stdout), as it comes. */
  readonly onLine?: (line: string) => void;
  readonly signal?: AbortSignal;
}

/** Lines worth repeating in an error: libpq/server errors and the statement that failed. */
const errorLine = /\b(error|fatal|panic):|^(DETAIL|HINT|Command was):|No space left on device/i;
const maxErrorLines = 8;

/**
 * Runs a Postgres client program to completion. It resolves with stdout when
 * the exit code is 0; otherwise it throws DiskFullError when the output says
 * the disk is full, ToolFailedError with the error lines, or
 * ImportCancelledError when the signal aborted it (the program is killed).
 */
export async function runPgTool(run: PgToolRun): Promise<string> {
  if (run.signal?.aborted) throw new ImportCancelledError(run.phase);
  // setpriv --pdeathsig: the program dies with fast-import, even on SIGKILL.
  const child = spawn("setpriv", ["--pdeathsig", "SIGKILL", "--", run.program, ...run.args], {
    env: cleanEnv(run.env),
    stdio: ["ignore", "pipe", "pipe"],
  });
  const onAbort = () => child.kill("SIGTERM");
  run.signal?.addEventListener("abort", onAbort, { once: true });
  const errors: string[] = [];
  let stdout = "";
  const collect = (line: string) => {
    if (errorLine.test(line) && errors.length < maxErrorLines) errors.push(line.trim());
    run.onLine?.(line);
  };
  const stderrDone = readLines(child.stderr!, collect);
  const stdoutDone = readLines(child.stdout!, (line) => {
    stdout += `${line}\n`;
    collect(line);
  });
  const [exit] = await Promise.all([
    once(child, "close") as Promise<[number | null, NodeJS.Signals | null]>,
    stderrDone,
    stdoutDone,
  ]).catch((error: unknown) => {
    throw new ToolFailedError(run.phase, programName(run.program), run.target, undefined, [String(error)]);
  });
  run.signal?.removeEventListener("abort", onAbort);
  const [code] = exit;
  if (code === 0) return stdout;
  if (run.signal?.aborted) throw new ImportCancelledError(run.phase);
  const full = diskFullLine(errors.join("\n"));
  if (full) throw new DiskFullError(run.phase, run.workdir, full);
  throw new ToolFailedError(run.phase, programName(run.program), run.target, code ?? undefined, errors);
}

async function readLines(stream: NodeJS.ReadableStream, onLine: (line: string) => void): Promise<void> {
  for await (const line of createInterface({ input: stream, crlfDelay: Infinity })) onLine(line);
}

function cleanEnv(extra: Readonly<Record<string, string>> = {}): NodeJS.ProcessEnv {
  const keep = ["PATH", "HOME", "LANG", "LC_ALL", "LD_LIBRARY_PATH", "TZ"];
  const env: NodeJS.ProcessEnv = {};
  for (const name of keep) if (process.env[name] !== undefined) env[name] = process.env[name];
  return { ...env, PGAPPNAME: "pgmesh-fast-import", PGCONNECT_TIMEOUT: "30", ...extra };
}

function programName(program: string): string {
  return program.slice(program.lastIndexOf("/") + 1);
}
