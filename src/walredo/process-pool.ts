import { Code } from "@connectrpc/connect";
import type { Logger } from "pino";
import { resolveUnprivilegedUser, type OsUser } from "../pg/index.js";
import { RedoProcess } from "./redo-process.js";
import { RedoProcessExitedError, RedoProcessStartError } from "./redo-process-errors.js";
import type { BufferTag } from "./redo-protocol.js";
import { ProcessSlots } from "./process-slots.js";
import type { ValidRedoRequest } from "./validate-redo-request.js";
import type { CompiledWalRedoOptions } from "./walredo-options.js";
import { RedoFailedError } from "./walredo-errors.js";

/** One process of the pool and what it is doing. */
interface Slot {
  readonly process: RedoProcess;
  readonly lane: TenantLane;
  inFlight: number;
  idleTimer: NodeJS.Timeout | undefined;
  lastUsedMs: number;
  /** Killed (idle, evicted, failed, closing) or exited: it takes no more requests, and is killed once. */
  retired: boolean;
}

/** The processes of one tenant and Postgres major. */
interface TenantLane {
  readonly tenantId: string;
  readonly pgMajor: number;
  /** Pipelined processes for first attempts. */
  readonly shared: Slot[];
  /** A process spawning for `shared`; concurrent first requests wait on it instead of spawning more. */
  spawning: Promise<Slot> | undefined;
  /** The retry process: runs one retried request at a time, so a crash blames exactly that request. */
  solo: Slot | undefined;
  soloQueue: Promise<unknown>;
  /** Retried requests queued or running; the lane stays in the pool while there are any. */
  soloRuns: number;
}

function laneKey(tenantId: string, pgMajor: number): string {
  return `${tenantId}\u0000${pgMajor}`;
}

/** Why one attempt on a process failed (the process is gone either way). */
class AttemptFailure extends Error {
  constructor(readonly kind: "timeout" | "exited", detail: string) {
    super(detail);
  }
}

export interface ProcessPoolStats {
  /** Live processes: from the moment one is spawned until its exit is seen; never above maxProcesses. */
  readonly processes: number;
  readonly tenants: number;
  /** Requests and pings on processes now. */
  readonly inFlight: number;
  /** Requests waiting for a process to exit at the maxProcesses cap. */
  readonly waiting: number;
  /** Processes spawned so far (failed starts included). */
  readonly spawns: number;
  /** Process exits seen so far, whatever ended them. */
  readonly exits: number;
}

/**
 * Walredo processes per tenant: spawned lazily, several per tenant under
 * load (up to maxProcessesPerTenant, a new one once every process has
 * pipelineDepth requests in flight), killed when idle, killed and replaced on
 * a request timeout or crash. A failed request is retried once, alone, on a
 * fresh process; if that fails too it is answered with an error.
 *
 * Global cap: a process holds one of maxProcesses slots from before its
 * spawn until its exit is seen (ProcessSlots). A request that needs a new
 * process when none is free waits in line; for each waiter the least
 * recently used idle process (of any tenant) is killed, once, and its slot
 * goes to the waiter when it has exited. A waiter that gets no slot within
 * queueTimeoutMs fails with RESOURCE_EXHAUSTED. A tenant grows beyond its
 * first process only on a slot that is free.
 */
export class RedoProcessPool {
  private readonly lanes = new Map<string, TenantLane>();
  /** Processes started and not yet exited (a process is in `slots` before it gets here, and after it leaves). */
  private readonly live = new Set<Slot>();
  private readonly starting = new Set<Promise<unknown>>();
  private readonly slots: ProcessSlots;
  private spawns = 0;
  private exits = 0;
  private closed = false;
  private user: Promise<OsUser> | undefined;

  constructor(private readonly options: CompiledWalRedoOptions) {
    this.slots = new ProcessSlots(options.maxProcesses);
  }

  get stats(): ProcessPoolStats {
    let inFlight = 0;
    for (const slot of this.live) inFlight += slot.inFlight;
    return {
      processes: this.slots.inUse, tenants: this.lanes.size, inFlight, waiting: this.slots.waiting, spawns: this.spawns, exits: this.exits,
    };
  }

  /** The pids of the processes alive now. */
  get pids(): number[] {
    return [...this.live].map((s) => s.process.pid);
  }

  /** Rebuilds one page; rejects with RedoFailedError. */
  async redo(request: ValidRedoRequest): Promise<Uint8Array> {
    const { tenantId, tag } = request;
    const lane = this.lane(tenantId, request.pgMajor);
    try {
      return await this.attempt(await this.pickShared(lane, tag), request);
    } catch (err) {
      if (!(err instanceof AttemptFailure)) throw err;
      this.ensureOpen(tenantId);
      this.logger(lane).warn({ tag, reason: err.message }, "walredo request failed; retrying once on a fresh process");
    }
    try {
      // The lane as the pool has it now: the failed process may have been its last, and the lane gone with it.
      return await this.runSolo(this.lane(tenantId, request.pgMajor), tag, (slot) => this.attempt(slot, request));
    } catch (err) {
      if (!(err instanceof AttemptFailure)) throw err;
      this.ensureOpen(tenantId);
      const code = err.kind === "timeout" ? Code.DeadlineExceeded : Code.InvalidArgument;
      const why = err.kind === "timeout"
        ? `timed out twice (--request-timeout-ms ${this.options.requestTimeoutMs})`
        : "killed two walredo processes, so the records or base image are not valid for this page";
      throw new RedoFailedError(code, tenantId, tag, `${why}; last failure: ${err.message}`);
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

  /** Kills every process and waits until each is reaped; waiting and later requests fail with UNAVAILABLE. */
  async close(): Promise<void> {
    this.closed = true;
    this.slots.cancelWaiters();
    await Promise.allSettled([...this.starting]);
    const slots = [...this.live];
    for (const slot of slots) this.retire(slot);
    await Promise.all(slots.map((s) => s.process.exited));
  }

  private ensureOpen(tenantId: string): void {
    if (this.closed) throw new RedoFailedError(Code.Unavailable, tenantId, undefined, "the walredo service is shutting down; retry on another instance");
  }

  private lane(tenantId: string, pgMajor: number): TenantLane {
    this.ensureOpen(tenantId);
    const key = laneKey(tenantId, pgMajor);
    let lane = this.lanes.get(key);
    if (!lane) {
      lane = { tenantId, pgMajor, shared: [], spawning: undefined, solo: undefined, soloQueue: Promise.resolve(), soloRuns: 0 };
      this.lanes.set(key, lane);
    }
    return lane;
  }

  private logger(lane: TenantLane, pid?: number): Logger {
    return this.options.logger.child({ tenant: lane.tenantId, pgMajor: lane.pgMajor, ...(pid ? { redoPid: pid } : {}) });
  }

  /**
   * A process of the tenant for one more request, already claimed (counted in
   * flight): the least loaded one; once every process has pipelineDepth
   * requests in flight, a new one is started in the background if a slot is
   * free (the request does not wait for it). The first request of a tenant
   * waits for its process (and for a slot), and concurrent first requests
   * wait for the same one.
   */
  private async pickShared(lane: TenantLane, tag: BufferTag | undefined): Promise<Slot> {
    for (;;) {
      let best: Slot | undefined;
      for (const slot of lane.shared) if (!best || slot.inFlight < best.inFlight) best = slot;
      if (best) {
        const busy = best.inFlight >= this.options.pipelineDepth;
        if (busy && !lane.spawning && lane.shared.length < this.options.maxProcessesPerTenant && this.slots.tryTake()) {
          void this.spawnShared(lane, tag, true).then((slot) => this.release(slot), (err: Error) => {
            this.logger(lane).warn({ err: err.message }, "could not add a walredo process");
          });
        }
        return this.claim(best);
      }
      if (!lane.spawning) return this.spawnShared(lane, tag, false);
      await lane.spawning;
    }
  }

  /** A new process for the lane's shared set, claimed for the caller; concurrent first requests wait on it. */
  private spawnShared(lane: TenantLane, tag: BufferTag | undefined, slotTaken: boolean): Promise<Slot> {
    const spawning = this.spawn(lane, tag, slotTaken).then((slot) => {
      lane.shared.push(slot);
      return slot;
    });
    lane.spawning = spawning;
    const done = (): void => {
      lane.spawning = undefined;
      this.dropIfEmpty(lane);
    };
    spawning.then(done, done);
    return spawning;
  }

  private claim(slot: Slot): Slot {
    slot.inFlight++;
    clearTimeout(slot.idleTimer);
    return slot;
  }

  private runSolo<T>(lane: TenantLane, tag: BufferTag, work: (slot: Slot) => Promise<T>): Promise<T> {
    lane.soloRuns++;
    const run = lane.soloQueue.then(async () => {
      if (lane.solo) return work(this.claim(lane.solo));
      lane.solo = await this.spawn(lane, tag, false);
      return work(lane.solo);
    }).finally(() => {
      lane.soloRuns--;
      this.dropIfEmpty(lane);
    });
    lane.soloQueue = run.catch(() => undefined);
    return run;
  }

  /**
   * Kills the least recently used idle processes until the processes already
   * dying will free a slot for every waiter. Each process is killed once:
   * a retired one is never picked again, and keeps its slot until it exits.
   */
  private evictForWaiters(): void {
    let dying = 0;
    for (const slot of this.live) if (slot.retired) dying++;
    while (this.slots.waiting > dying) {
      let victim: Slot | undefined;
      for (const slot of this.live) {
        if (!slot.retired && slot.inFlight === 0 && (!victim || slot.lastUsedMs < victim.lastUsedMs)) victim = slot;
      }
      if (!victim) return;
      this.logger(victim.lane, victim.process.pid).info("evicting an idle walredo process to make room for another");
      this.retire(victim);
      dying++;
    }
  }

  /** A slot for a new process: a free one, else one that an exiting process gives back within queueTimeoutMs. */
  private async takeSlot(lane: TenantLane, tag: BufferTag | undefined): Promise<void> {
    const taking = this.slots.take(this.options.queueTimeoutMs);
    this.evictForWaiters();
    if (await taking) return;
    this.ensureOpen(lane.tenantId);
    const { maxProcesses, queueTimeoutMs } = this.options;
    throw new RedoFailedError(Code.ResourceExhausted, lane.tenantId, tag,
      `all ${maxProcesses} walredo processes are busy (--max-processes ${maxProcesses}) and none became free within ${queueTimeoutMs} ms (--queue-timeout-ms); retry later or raise --max-processes`);
  }

  /** Starts a process for the lane and returns it claimed for the caller; takes a slot first unless slotTaken. */
  private async spawn(lane: TenantLane, tag: BufferTag | undefined, slotTaken: boolean): Promise<Slot> {
    const bundleDir = this.options.bundleDir;
    if (!bundleDir) {
      if (slotTaken) this.slots.release();
      throw new RedoFailedError(Code.Unavailable, lane.tenantId, tag, "no Postgres bundle is configured (--bundle DIR); build one with `bundle --out DIR`");
    }
    if (!slotTaken) {
      this.ensureOpen(lane.tenantId);
      await this.takeSlot(lane, tag);
    }
    let process: RedoProcess;
    try {
      this.ensureOpen(lane.tenantId);
      this.user ??= resolveUnprivilegedUser(this.options.user);
      const user = await this.user;
      let log = this.logger(lane);
      this.spawns++;
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
      // RedoProcess.start reaps a process that did not start before it rejects.
      this.slots.release();
      if (err instanceof RedoFailedError) throw err;
      const detail = err instanceof RedoProcessStartError ? err.message : String(err);
      throw new RedoFailedError(Code.Unavailable, lane.tenantId, tag, `could not start a walredo process: ${detail}`);
    }
    const slot: Slot = { process, lane, inFlight: 1, idleTimer: undefined, lastUsedMs: Date.now(), retired: false };
    this.live.add(slot);
    this.logger(lane, process.pid).info("walredo process started");
    void process.exited.then((exit) => {
      slot.retired = true;
      this.forget(slot);
      this.live.delete(slot);
      this.exits++;
      this.slots.release();
      this.logger(lane, process.pid).info({ code: exit.code, signal: exit.signal, reason: exit.reason }, "walredo process exited");
    });
    if (this.closed) this.retire(slot);
    return slot;
  }

  /** Stops giving the process requests and kills it; idempotent. Its slot comes back when it has exited. */
  private retire(slot: Slot): void {
    if (slot.retired) return;
    slot.retired = true;
    this.forget(slot);
    slot.process.kill();
  }

  /** Takes a slot out of its lane so no new request reaches it. */
  private forget(slot: Slot): void {
    clearTimeout(slot.idleTimer);
    const lane = slot.lane;
    const i = lane.shared.indexOf(slot);
    if (i >= 0) lane.shared.splice(i, 1);
    if (lane.solo === slot) lane.solo = undefined;
    this.dropIfEmpty(lane);
  }

  /** Removes a lane that has no process, spawns none and has no retried request. */
  private dropIfEmpty(lane: TenantLane): void {
    const key = laneKey(lane.tenantId, lane.pgMajor);
    if (lane.shared.length === 0 && !lane.solo && !lane.spawning && lane.soloRuns === 0 && this.lanes.get(key) === lane) {
      this.lanes.delete(key);
    }
  }

  private armIdle(slot: Slot): void {
    clearTimeout(slot.idleTimer);
    slot.idleTimer = setTimeout(() => {
      if (slot.inFlight > 0 || slot.retired) return;
      this.logger(slot.lane, slot.process.pid).info({ idleTimeoutMs: this.options.idleTimeoutMs }, "killing an idle walredo process");
      this.retire(slot);
    }, this.options.idleTimeoutMs);
    slot.idleTimer.unref();
  }

  /** Ends one claim of a slot; an idle process waits for its idle timeout, or is evicted at once for a waiter. */
  private release(slot: Slot): void {
    slot.inFlight--;
    slot.lastUsedMs = Date.now();
    if (slot.inFlight > 0 || slot.retired) return;
    this.armIdle(slot);
    this.evictForWaiters();
  }

  /** Runs work on a claimed slot and releases it. */
  private async track<T>(slot: Slot, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } finally {
      this.release(slot);
    }
  }

  /** One attempt; on timeout or exit the process is killed and taken out of the pool. */
  private attempt(slot: Slot, request: ValidRedoRequest): Promise<Uint8Array> {
    return this.track(slot, async () => {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new AttemptFailure("timeout",
          `no answer from walredo process ${slot.process.pid} after ${this.options.requestTimeoutMs} ms`)), this.options.requestTimeoutMs);
      });
      try {
        return await Promise.race([slot.process.applyEncoded(request.frames), timeout]);
      } catch (err) {
        if (err instanceof AttemptFailure || err instanceof RedoProcessExitedError) {
          this.retire(slot);
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
