import { tmpdir } from "node:os";
import path from "node:path";

/** prlimit limits for one walredo process; a missing or 0 field leaves that limit alone. Core dumps are always off. */
export interface RedoProcessResourceLimits {
  readonly addressSpaceBytes?: number;
  readonly cpuSeconds?: number;
  readonly openFiles?: number;
  readonly fileSizeBytes?: number;
}

export interface RedoProcessOptions {
  /** DIR of `bundle --out DIR`. */
  readonly bundleDir: string;
  /** Default 15; the bundle must hold v<major>/. */
  readonly pgMajor?: number;
  /** Who the process runs as; default: the current user (as root this must be given: Postgres refuses root). */
  readonly user?: { readonly uid: number; readonly gid: number };
  /** chroot into DIR/v<major> (needs root); default false. */
  readonly chroot?: boolean;
  /** Without chroot: the host directory for per-process scratch clusters; default os.tmpdir(). */
  readonly scratchRoot?: string;
  readonly limits?: RedoProcessResourceLimits;
  /** Every line the process writes to stderr. */
  readonly onStderrLine?: (line: string) => void;
  /** Lines of stderr kept for exit reports; default 20. */
  readonly stderrTailLines?: number;
  /** start() fails if the first ping has not come back by then; default 30 s. */
  readonly startTimeoutMs?: number;
  /** kill() sends SIGTERM (the wrapper kills and reaps Postgres, removes its scratch), then SIGKILL after this; default 2 s. */
  readonly killGraceMs?: number;
}

export interface CompiledRedoProcessOptions {
  readonly bundleDir: string;
  readonly pgMajor: number;
  readonly user: { readonly uid: number; readonly gid: number } | undefined;
  readonly chroot: boolean;
  readonly scratchRoot: string;
  readonly limits: RedoProcessResourceLimits;
  readonly onStderrLine: (line: string) => void;
  readonly stderrTailLines: number;
  readonly startTimeoutMs: number;
  readonly killGraceMs: number;
}

export class RedoProcessOptionsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RedoProcessOptionsError";
  }
}

function positiveInteger(name: string, value: number | undefined, fallback: number): number {
  const v = value ?? fallback;
  if (!Number.isInteger(v) || v <= 0) throw new RedoProcessOptionsError(`${name} must be a positive integer, got ${value}`);
  return v;
}

export function compileRedoProcessOptions(options: RedoProcessOptions): CompiledRedoProcessOptions {
  if (!options.bundleDir) throw new RedoProcessOptionsError("bundleDir is required: the DIR of `bundle --out DIR`");
  const pgMajor = positiveInteger("pgMajor", options.pgMajor, 15);
  const chroot = options.chroot ?? false;
  const root = (process.getuid?.() ?? 0) === 0;
  if (chroot && !root) throw new RedoProcessOptionsError("chroot: true needs root; run as root or set chroot: false");
  if (root && options.user === undefined) {
    throw new RedoProcessOptionsError("running as root: give user { uid, gid } of an unprivileged account (Postgres refuses to run as root)");
  }
  if (options.user && (options.user.uid === 0 || !Number.isInteger(options.user.uid) || !Number.isInteger(options.user.gid))) {
    throw new RedoProcessOptionsError(`user ${JSON.stringify(options.user)} is not an unprivileged uid/gid pair`);
  }
  for (const [name, value] of Object.entries(options.limits ?? {})) {
    if (value !== undefined && (!Number.isInteger(value) || value < 0)) {
      throw new RedoProcessOptionsError(`limits.${name} must be a non-negative integer, got ${value}`);
    }
  }
  return {
    bundleDir: path.resolve(options.bundleDir),
    pgMajor,
    user: options.user,
    chroot,
    scratchRoot: path.resolve(options.scratchRoot ?? tmpdir()),
    limits: options.limits ?? {},
    onStderrLine: options.onStderrLine ?? (() => {}),
    stderrTailLines: positiveInteger("stderrTailLines", options.stderrTailLines, 20),
    startTimeoutMs: positiveInteger("startTimeoutMs", options.startTimeoutMs, 30_000),
    killGraceMs: positiveInteger("killGraceMs", options.killGraceMs, 2_000),
  };
}
