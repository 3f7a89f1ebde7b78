import { spawn, type ChildProcess } from "node:child_process";
import { chown, mkdtemp, rm } from "node:fs/promises";
import path from "node:path";
import { removeOrphanedShmem } from "../pg/index.js";
import { RedoProcessExitedError, RedoProcessStartError } from "./redo-process-errors.js";
import { compileRedoProcessOptions, type CompiledRedoProcessOptions, type RedoProcessOptions } from "./redo-process-options.js";
import { checkRedoRequest, encodePing, encodeRedoRequest, PageReplyDecoder, PAGE_SIZE, type RedoRequest } from "./redo-protocol.js";

export interface RedoProcessExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** The last lines the process wrote to stderr. */
  readonly stderrTail: string;
  /** Why it ended, when known: its last FATAL/PANIC/ERROR line, or what pgmesh saw go wrong. */
  readonly reason: string | undefined;
}

interface PendingReply {
  readonly kind: "page" | "ping";
  readonly resolve: (page: Uint8Array) => void;
  readonly reject: (error: Error) => void;
}

const SEARCH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const ZERO_PAGE = Buffer.alloc(PAGE_SIZE);

/** The command line: [prlimit …] then chroot + the wrapper, or the launcher. */
function commandLine(options: CompiledRedoProcessOptions): string[] {
  const { limits } = options;
  const prlimit = ["prlimit", "--core=0"];
  if (limits.addressSpaceBytes) prlimit.push(`--as=${limits.addressSpaceBytes}`);
  if (limits.cpuSeconds) prlimit.push(`--cpu=${limits.cpuSeconds}`);
  if (limits.openFiles) prlimit.push(`--nofile=${limits.openFiles}`);
  if (limits.fileSizeBytes) prlimit.push(`--fsize=${limits.fileSizeBytes}`);
  prlimit.push("--");
  const major = String(options.pgMajor);
  const walredo = options.chroot
    ? ["chroot", `--userspec=${options.user!.uid}:${options.user!.gid}`, "--groups=",
      path.join(options.bundleDir, `v${major}`), "/bin/postgres", "--wal-redo"]
    : [path.join(options.bundleDir, "launcher"), major, "postgres", "--wal-redo"];
  return [...prlimit, ...walredo];
}

/**
 * One walredo process of a bundle (`postgres --wal-redo`), driven over its
 * stdin/stdout. Requests may be pipelined: replies come back in order.
 * The process is always reaped and its scratch directory removed; a dead
 * process rejects every outstanding and later call with RedoProcessExitedError.
 */
export class RedoProcess {
  readonly pid: number;
  /** Resolves once the process is reaped and its scratch directory removed; never rejects. */
  readonly exited: Promise<RedoProcessExit>;

  private readonly pending: PendingReply[] = [];
  private readonly decoder = new PageReplyDecoder();
  private readonly stderrLines: string[] = [];
  private stderrPartial = "";
  private exit: RedoProcessExit | undefined;
  private problem: string | undefined;
  private killTimer: NodeJS.Timeout | undefined;

  private constructor(
    private readonly child: ChildProcess,
    private readonly options: CompiledRedoProcessOptions,
    scratchDir: string,
  ) {
    this.pid = child.pid ?? -1;
    child.stdin!.on("error", () => {
      // EPIPE when the process died; its exit is reported through `exited`.
    });
    child.stdout!.on("data", (chunk: Buffer) => this.onReply(chunk));
    child.stderr!.setEncoding("utf8");
    child.stderr!.on("data", (text: string) => this.onStderr(text));
    this.exited = new Promise<RedoProcessExit>((resolve) => {
      let exitTimer: NodeJS.Timeout | undefined;
      // If something still holds the pipes after the exit, stop waiting for them.
      child.once("exit", () => {
        exitTimer = setTimeout(() => {
          child.stdout!.destroy();
          child.stderr!.destroy();
        }, 2_000);
      });
      child.once("close", (code: number | null, signal: NodeJS.Signals | null) => {
        clearTimeout(exitTimer);
        clearTimeout(this.killTimer);
        if (this.stderrPartial) this.addStderrLine(this.stderrPartial);
        const exit: RedoProcessExit = {
          code,
          signal,
          stderrTail: this.stderrLines.join("\n"),
          reason: this.problem ?? this.stderrLines.filter((l) => /^(FATAL|PANIC|ERROR):/.test(l)).at(-1),
        };
        this.exit = exit;
        const error = new RedoProcessExitedError(this.pid, code, signal, exit.stderrTail, exit.reason);
        for (const p of this.pending.splice(0)) p.reject(error);
        // A killed wrapper left its scratch cluster, and maybe the segment of its killed Postgres.
        void removeOrphanedShmem(path.join(scratchDir, "data"), { waitMs: 1_000 }).catch(() => false)
          .then(() => rm(scratchDir, { recursive: true, force: true }))
          .finally(() => resolve(exit));
      });
    });
  }

  /** Spawns a walredo process and resolves once it has answered a ping. */
  static async start(options: RedoProcessOptions): Promise<RedoProcess> {
    const compiled = compileRedoProcessOptions(options);
    const scratchParent = compiled.chroot
      ? path.join(compiled.bundleDir, `v${compiled.pgMajor}`, "tmp")
      : compiled.scratchRoot;
    let scratchDir: string;
    try {
      scratchDir = await mkdtemp(path.join(scratchParent, "pgmesh-redo-"));
      if (compiled.user && (process.getuid?.() ?? 0) === 0) await chown(scratchDir, compiled.user.uid, compiled.user.gid);
    } catch (error) {
      throw new RedoProcessStartError(`cannot create a scratch directory under ${scratchParent}: ${(error as Error).message}`, "");
    }
    const scratchInside = compiled.chroot ? `/tmp/${path.basename(scratchDir)}` : scratchDir;
    const [command, ...args] = commandLine(compiled);
    let child: ChildProcess;
    try {
      child = spawn(command!, args, {
        stdio: ["pipe", "pipe", "pipe"],
        // The wrapper builds its scratch cluster in this directory and removes it when it ends,
        // even if this process is gone by then; `exited` removes it too, for a killed wrapper.
        env: { PATH: SEARCH_PATH, PGMESH_WALREDO_SCRATCH_DIR: scratchInside },
        // As root, switch to the user (chroot switches itself); anybody else runs it as themselves.
        ...(compiled.user && !compiled.chroot && (process.getuid?.() ?? 0) === 0 ? { uid: compiled.user.uid, gid: compiled.user.gid } : {}),
      });
    } catch (error) {
      await rm(scratchDir, { recursive: true, force: true });
      throw new RedoProcessStartError(`cannot spawn ${command}: ${(error as Error).message}`, "");
    }
    const spawnError = new Promise<Error>((resolve) => child.once("error", resolve));
    if (child.pid === undefined) {
      const error = await spawnError;
      await rm(scratchDir, { recursive: true, force: true });
      throw new RedoProcessStartError(`cannot spawn ${command}: ${error.message}`, "");
    }
    const redo = new RedoProcess(child, compiled, scratchDir);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer to the first ping within ${compiled.startTimeoutMs} ms`)), compiled.startTimeoutMs);
    });
    try {
      await Promise.race([redo.ping(), timeout]);
      return redo;
    } catch (error) {
      redo.kill();
      const exit = await redo.exited;
      const detail = error instanceof RedoProcessExitedError ? error.message : (error as Error).message;
      throw new RedoProcessStartError(`walredo process of ${compiled.bundleDir} (v${compiled.pgMajor}) did not start: ${detail}`, exit.stderrTail);
    } finally {
      clearTimeout(timer);
    }
  }

  get alive(): boolean {
    return this.exit === undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Requests written and not yet answered. */
  get inFlight(): number {
    return this.pending.length;
  }

  /**
   * Rebuilds one page: B, [P], A…, G. Resolves with the 8192-byte page.
   * A request that cannot be encoded rejects with RedoProtocolError and sends nothing.
   */
  applyRecords(request: RedoRequest): Promise<Uint8Array> {
    try {
      checkRedoRequest(request);
    } catch (error) {
      return Promise.reject(error as Error);
    }
    return this.applyEncoded(encodeRedoRequest(request));
  }

  /** Rebuilds one page from the frames of a request already checked and encoded (encodeRedoRequest). */
  applyEncoded(frames: Uint8Array): Promise<Uint8Array> {
    return this.send("page", frames);
  }

  /** Round trip of an H frame. */
  async ping(): Promise<void> {
    await this.send("ping", encodePing());
  }

  /**
   * Ends the process: SIGTERM (the wrapper kills and reaps Postgres and
   * removes its scratch cluster), then SIGKILL if it is still there after
   * killGraceMs. Idempotent; `exited` resolves when it is gone.
   */
  kill(): void {
    if (!this.alive || this.killTimer !== undefined) return;
    this.child.kill("SIGTERM");
    this.killTimer = setTimeout(() => {
      if (this.alive) this.child.kill("SIGKILL");
    }, this.options.killGraceMs);
  }

  private send(kind: PendingReply["kind"], frames: Uint8Array): Promise<Uint8Array> {
    if (!this.alive) {
      const exit = this.exit;
      return Promise.reject(new RedoProcessExitedError(
        this.pid, exit?.code ?? this.child.exitCode, exit?.signal ?? this.child.signalCode, exit?.stderrTail ?? this.stderrLines.join("\n"), exit?.reason ?? this.problem,
      ));
    }
    return new Promise<Uint8Array>((resolve, reject) => {
      this.pending.push({ kind, resolve, reject });
      this.child.stdin!.write(frames);
    });
  }

  private onReply(chunk: Buffer): void {
    for (const page of this.decoder.push(chunk)) {
      const waiting = this.pending.shift();
      if (!waiting) {
        this.protocolViolation("the process sent a page nobody asked for");
        return;
      }
      if (waiting.kind === "ping" && !ZERO_PAGE.equals(page)) {
        waiting.reject(new Error("the answer to a ping was not a zero page"));
        this.protocolViolation("the answer to a ping was not a zero page");
        return;
      }
      waiting.resolve(page);
    }
  }

  private protocolViolation(problem: string): void {
    this.problem ??= `protocol violation: ${problem}`;
    this.kill();
  }

  private onStderr(text: string): void {
    const lines = (this.stderrPartial + text).split("\n");
    this.stderrPartial = lines.pop()!;
    for (const line of lines) this.addStderrLine(line);
  }

  private addStderrLine(line: string): void {
    this.stderrLines.push(line);
    if (this.stderrLines.length > this.options.stderrTailLines) this.stderrLines.shift();
    this.options.onStderrLine(line);
  }
}
