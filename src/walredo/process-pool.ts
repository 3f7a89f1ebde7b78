import { Code } from "@connectrpc/connect";
import type { Logger } from "pino";
import { resolveUnprivilegedUser, type OsUser } from "../pg/index.js";
import { RedoProcess } from "./redo-process.js";
import { RedoProcessExitedError, RedoProcessStartError } from "./redo-process-errors.js";
import type { RedoRequest } from "./redo-protocol.js";
import type { CompiledWalRedoOptions } from "./walredo-options.js";
import { RedoFailedError } from "./walredo-errors.js";

/** One process of the pool and what it is doing. */
interface Slot {
  readonly process: RedoProcess;
  readonly lane: TenantLane;
  inFlight: number;
  idleTimer: NodeJS.Timeout | undefined;
  lastUsedMs: number;
}

/** The processes of one tenant and Postgres major. */
interface TenantLane {
  readonly tenantId: string;
  readonly pgMajor: number;
  /** Pipelined processes for first attempts. */
  readonly shared: Slot[];
  /** A process spawning for `shared`; concurrent requests wait on it instead of spawning more. */
  spawning: Promise<Slot> | undefined;
  /** The retry process: runs one retried request at a time, so a crash blames exactly that request. */
  solo: Slot | undefined;
  soloQueue: Promise<unknown>;
}

/** Why one attempt on a process failed (the process is gone either way). */
class AttemptFailure extends Error {
  constructor(readonly kind: "timeout" | "exited", detail: string) {
    super(detail);
  }
}

export interface ProcessPoolStats {
  readonly processes: number;
  readonly tenants: number;
  /** Requests and pings on processes now. */
  readonly inFlight: number;
}

/**
 * Walredo processes per tenant: spawned lazily, several per tenant under
 * load (up to maxProcessesPerTenant, a new one once every process has
 * pipelineDepth requests in flight), killed when idle, killed and replaced on
 * a request timeout or crash. A failed request is retried once, alone, on a
 * fresh process; if that fails too it is answered with an error.
 *
 * Global cap: when maxProcesses are running and a tenant without a process
 * arrives, the least recently used idle process of another tenant is killed
 * to make room; when none is idle the request fails at once with
 * RESOURCE_EXHAUSTED (no queueing: the caller decides when to retry).
 */
export class RedoProcessPool {
  private readonly lanes = new Map<string, TenantLane>();
  private readonly live = new Set<Slot>();
  private readonly starting = new Set<Promise<unknown>>();
  /** Processes running or being started; never above maxProcesses. */
  private reserved = 0;
  private closed = false;
  private user: Promise<OsUser> | undefined;

  constructor(private readonly options: CompiledWalRedoOptions) {}

  get stats(): ProcessPoolStats {
    let inFlight = 0;
    for (const slot of this.live) inFlight += slot.inFlight;
    return { processes: this.live.size, tenants: this.lanes.size, inFlight };
  }

  /** The pids of the processes alive now. */
  get pids(): number[] {
    return [...this.live].map((s) => s.process.pid);
  }

  /** Rebuilds one page; rejects with RedoFailedError. */
  async redo(tenantId: string, pgMajor: number, request: RedoRequest): Promise<Uint8Array> {
    const lane = this.lane(tenantId, pgMajor);
    try {
      return await this.attempt(await this.pickShared(lane, request), request);
    } catch (err) {
      if (!(err instanceof AttemptFailure)) throw err;
      this.ensureOpen(tenantId);
      this.logger(lane).warn({ tag: request.tag, reason: err.message }, "walredo request failed; retrying once on a fresh process");
    }
    try {
      return await this.runSolo(lane, (slot) => this.attempt(slot, request));
    } catch (err) {
      if (!(err instanceof AttemptFailure)) throw err;
      this.ensureOpen(tenantId);
      const code = err.kind === "timeout" ? Code.DeadlineExceeded : Code.InvalidArgument;
      const why = err.kind === "timeout"
        ? `timed out twice (--request-timeout-ms ${this.options.requestTimeoutMs})`
        : "killed two walredo processes, so the records or base image are not valid for this page";
      throw new RedoFailedError(code, tenantId, request.tag, `${why}; last failure: ${err.message}`);
    }
  }

  /** Round trip of a ping (H frame) to one of the tenant's processes, in microseconds. */
  async ping(tenantId: string, pgMajor: number): Promise<number> {
    const lane = this.lane(tenantId, pgMajor);
    const slot = await this.pickShared(lane, undefined);
    const started = process.hrtime.bigint();
    await this.track(slot, async () => {
      try {
        await slot.process.ping();
      } catch (err) {
        throw new RedoFailedError(Code.Unavailable, tenantId, undefined, `the walredo process ${slot.process.pid} did not answer a ping: ${(err as Error).message}`);
      }
    });
    return Number((process.hrtime.bigint() - started) / 1000n);
  }

  /** Kills every process and waits until each is reaped; later requests fail with UNAVAILABLE. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([...this.starting]);
    const slots = [...this.live];
    for (const slot of slots) slot.process.kill();
    await Promise.all(slots.map((s) => s.process.exited));
  }

  private ensureOpen(tenantId: string): void {
    if (this.closed) throw new RedoFailedError(Code.Unavailable, tenantId, undefined, "the walredo service is shutting down; retry on another instance");
  }

  private lane(tenantId: string, pgMajor: number): TenantLane {
    this.ensureOpen(tenantId);
    const key = `${tenantId}\u0000${pgMajor}`;
    let lane = this.lanes.get(key);
    if (!lane) {
      lane = { tenantId, pgMajor, shared: [], spawning: undefined, solo: undefined, soloQueue: Promise.resolve() };
      this.lanes.set(key, lane);
    }
    return lane;
  }

  private logger(lane: TenantLane, pid?: number): Logger {
    return this.options.logger.child({ tenant: lane.tenantId, pgMajor: lane.pgMajor, ...(pid ? { redoPid: pid } : {}) });
  }

  /**
   * A process of the tenant for one more request, already claimed (counted in
   * flight): the least loaded one; a new one is started in the background once
   * every process has pipelineDepth requests in flight (the request does not
   * wait for it); the first request of a tenant waits for its process, and
   * concurrent first requests wait for the same one.
   */
  private async pickShared(lane: TenantLane, request: RedoRequest | undefined): Promise<Slot> {
    for (;;) {
      let best: Slot | undefined;
      for (const slot of lane.shared) if (!best || slot.inFlight < best.inFlight) best = slot;
      const busy = best !== undefined && best.inFlight >= this.options.pipelineDepth;
      const canGrow = lane.shared.length < this.options.maxProcessesPerTenant && this.reserved < this.options.maxProcesses;
      if (best && (!busy || !canGrow || lane.spawning)) return this.claim(best);
      if (!lane.spawning) {
        lane.spawning = this.spawn(lane, request).then((slot) => {
          lane.shared.push(slot);
          return slot;
        }).finally(() => {
          lane.spawning = undefined;
        });
        if (best) {
          lane.spawning.catch((err: Error) => this.logger(lane).warn({ err: err.message }, "could not add a walredo process"));
          return this.claim(best);
        }
      }
      await lane.spawning;
    }
  }

  private claim(slot: Slot): Slot {
    slot.inFlight++;
    clearTimeout(slot.idleTimer);
    return slot;
  }

  private runSolo<T>(lane: TenantLane, work: (slot: Slot) => Promise<T>): Promise<T> {
    const run = lane.soloQueue.then(async () => {
      if (!lane.solo) lane.solo = await this.spawn(lane, undefined);
      return work(this.claim(lane.solo));
    });
    lane.soloQueue = run.catch(() => undefined);
    return run;
  }

  /** Makes room for one more process, evicting an idle one of another tenant if needed. */
  private reserve(lane: TenantLane): void {
    if (this.reserved < this.options.maxProcesses) {
      this.reserved++;
      return;
    }
    let victim: Slot | undefined;
    for (const slot of this.live) {
      if (slot.inFlight === 0 && slot.lane !== lane && (!victim || slot.lastUsedMs < victim.lastUsedMs)) victim = slot;
    }
    if (!victim) {
      throw new RedoFailedError(Code.ResourceExhausted, lane.tenantId, undefined,
        `all ${this.options.maxProcesses} walredo processes are busy (--max-processes); retry later`);
    }
    this.logger(victim.lane, victim.process.pid).info("evicting an idle walredo process to make room for another tenant");
    this.forget(victim);
    victim.process.kill();
    this.reserved++;
  }

  private async spawn(lane: TenantLane, request: RedoRequest | undefined): Promise<Slot> {
    const bundleDir = this.options.bundleDir;
    if (!bundleDir) throw new RedoFailedError(Code.Unavailable, lane.tenantId, request?.tag, "no Postgres bundle is configured (--bundle DIR); build one with `bundle --out DIR`");
    this.ensureOpen(lane.tenantId);
    this.reserve(lane);
    let process: RedoProcess;
    try {
      this.user ??= resolveUnprivilegedUser(this.options.user);
      const user = await this.user;
      let log = this.logger(lane);
      const starting = RedoProcess.start({
        bundleDir,
        pgMajor: lane.pgMajor,
        user: { uid: user.uid, gid: user.gid },
        chroot: this.options.chroot,
        ...(this.options.scratchRoot ? { scratchRoot: this.options.scratchRoot } : {}),
        limits: this.options.limits,
        onStderrLine: (line) => {
          if (/^(ERROR|FATAL|PANIC):/.test(line)) log.warn({ stderr: line }, "walredo process stderr");
          else log.info({ stderr: line }, "walredo process stderr");
        },
      });
      this.starting.add(starting);
      process = await starting.finally(() => this.starting.delete(starting));
      log = this.logger(lane, process.pid);
    } catch (err) {
      this.reserved--;
      const detail = err instanceof RedoProcessStartError ? err.message : String(err);
      throw new RedoFailedError(Code.Unavailable, lane.tenantId, request?.tag, `could not start a walredo process: ${detail}`);
    }
    const slot: Slot = { process, lane, inFlight: 0, idleTimer: undefined, lastUsedMs: Date.now() };
    this.live.add(slot);
    this.logger(lane, process.pid).info("walredo process started");
    void process.exited.then((exit) => {
      this.forget(slot);
      this.live.delete(slot);
      this.reserved--;
      this.logger(lane, process.pid).info({ code: exit.code, signal: exit.signal, reason: exit.reason }, "walredo process exited");
    });
    if (this.closed) process.kill();
    this.armIdle(slot);
    return slot;
  }

  /** Takes a slot out of its lane so no new request reaches it. */
  private forget(slot: Slot): void {
    clearTimeout(slot.idleTimer);
    const lane = slot.lane;
    const i = lane.shared.indexOf(slot);
    if (i >= 0) lane.shared.splice(i, 1);
    if (lane.solo === slot) lane.solo = undefined;
    if (lane.shared.length === 0 && !lane.solo && !lane.spawning) {
      this.lanes.delete(`${lane.tenantId}\u0000${lane.pgMajor}`);
    }
  }

  private armIdle(slot: Slot): void {
    clearTimeout(slot.idleTimer);
    slot.idleTimer = setTimeout(() => {
      if (slot.inFlight > 0) return;
      this.logger(slot.lane, slot.process.pid).info({ idleTimeoutMs: this.options.idleTimeoutMs }, "killing an idle walredo process");
      this.forget(slot);
      slot.process.kill();
    }, this.options.idleTimeoutMs);
    slot.idleTimer.unref();
  }

  /** Runs work on a claimed slot and releases it. */
  private async track<T>(slot: Slot, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } finally {
      slot.inFlight--;
      slot.lastUsedMs = Date.now();
      if (slot.inFlight === 0 && slot.process.alive) this.armIdle(slot);
    }
  }

  /** One attempt; on timeout or exit the process is killed and taken out of the pool. */
  private attempt(slot: Slot, request: RedoRequest): Promise<Uint8Array> {
    return this.track(slot, async () => {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new AttemptFailure("timeout",
          `no answer from walredo process ${slot.process.pid} after ${this.options.requestTimeoutMs} ms`)), this.options.requestTimeoutMs);
      });
      try {
        return await Promise.race([slot.process.applyRecords(request), timeout]);
      } catch (err) {
        if (err instanceof AttemptFailure || err instanceof RedoProcessExitedError) {
          this.forget(slot);
          slot.process.kill();
          if (err instanceof AttemptFailure) throw err;
          throw new AttemptFailure("exited", err.message);
        }
        throw err;
      } finally {
        clearTimeout(timer);
      }
    });
  }
}
