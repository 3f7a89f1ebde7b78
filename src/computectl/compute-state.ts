import { Code } from "@connectrpc/connect";
import { ComputeCtlError } from "./compute-ctl-error.js";

/** Neon's compute_ctl status names. */
export type ComputeStateName =
  | "empty"
  | "configuration_pending"
  | "init"
  | "running"
  | "configuration"
  | "failed"
  | "termination_pending_fast"
  | "termination_pending_immediate"
  | "terminated";

/*
 * Transitions, as in Neon's compute_ctl (and the comment in compute_ctl.proto):
 *   empty -> configuration_pending (no spec yet) -> init -> running
 *   empty -> init (spec given at start-up)
 *   running -> configuration -> running
 *   running -> termination_pending_fast | termination_pending_immediate -> terminated
 *   any state -> failed
 */
const allowed: Readonly<Record<ComputeStateName, readonly ComputeStateName[]>> = {
  empty: ["configuration_pending", "init"],
  configuration_pending: ["init"],
  init: ["running"],
  running: ["configuration", "termination_pending_fast", "termination_pending_immediate"],
  configuration: ["running"],
  failed: [],
  termination_pending_fast: ["terminated"],
  termination_pending_immediate: ["terminated"],
  terminated: [],
};

export interface StateSnapshot {
  readonly state: ComputeStateName;
  readonly changedAt: Date;
  /** Why the compute failed, or a warning that did not stop it. */
  readonly error: string;
}

/** A transition the state machine does not allow (FAILED_PRECONDITION). */
export class ComputeStateError extends ComputeCtlError {
  constructor(
    readonly from: ComputeStateName,
    readonly to: ComputeStateName,
    action: string,
  ) {
    super(`cannot ${action} a compute in state ${from}${hint(from)}`, Code.FailedPrecondition);
  }
}

function hint(state: ComputeStateName): string {
  switch (state) {
    case "init":
    case "configuration":
      return "; wait until it is running (WatchStatus)";
    case "failed":
      return "; start a new compute-ctl";
    case "terminated":
    case "termination_pending_fast":
    case "termination_pending_immediate":
      return "; it is stopping or stopped, start a new compute-ctl";
    default:
      return "";
  }
}

type Listener = (snapshot: StateSnapshot) => void;

/** The compute's current state; every change is announced to listeners. */
export class ComputeStateMachine {
  #snapshot: StateSnapshot = { state: "empty", changedAt: new Date(), error: "" };
  readonly #listeners = new Set<Listener>();

  get current(): StateSnapshot {
    return this.#snapshot;
  }

  get state(): ComputeStateName {
    return this.#snapshot.state;
  }

  canMove(to: ComputeStateName): boolean {
    // Failed and terminated are final: the first reason a compute failed is the one it keeps.
    return to === "failed" ? this.state !== "terminated" && this.state !== "failed" : allowed[this.state].includes(to);
  }

  /** Moves to `to`, or throws ComputeStateError (FAILED_PRECONDITION) naming `action`. */
  move(to: ComputeStateName, action: string): void {
    if (!this.canMove(to)) throw new ComputeStateError(this.state, to, action);
    this.#set({ state: to, changedAt: new Date(), error: to === "failed" ? this.#snapshot.error : this.#warningKept(to) });
  }

  /** Moves to failed with the reason (from any state but terminated). */
  fail(reason: string): void {
    if (!this.canMove("failed")) return;
    this.#set({ state: "failed", changedAt: new Date(), error: reason });
  }

  /** Records a warning that did not stop the compute; it stays in `error` until the next start. */
  warn(message: string): void {
    const error = this.#snapshot.error ? `${this.#snapshot.error}; ${message}` : message;
    this.#set({ ...this.#snapshot, error });
  }

  /** Calls `listener` on every change until the returned function is called. */
  subscribe(listener: Listener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Resolves once the state satisfies `predicate` (immediately if it does). */
  async waitFor(predicate: (s: StateSnapshot) => boolean, signal?: AbortSignal): Promise<StateSnapshot> {
    if (predicate(this.#snapshot)) return this.#snapshot;
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        unsubscribe();
        reject(signal?.reason ?? new Error("aborted"));
      };
      const unsubscribe = this.subscribe((s) => {
        if (!predicate(s)) return;
        unsubscribe();
        signal?.removeEventListener("abort", onAbort);
        resolve(s);
      });
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** Warnings from start-up (e.g. Epufs down) stay visible while running; a new start clears them. */
  #warningKept(to: ComputeStateName): string {
    return to === "init" ? "" : this.#snapshot.error;
  }

  #set(snapshot: StateSnapshot): void {
    this.#snapshot = snapshot;
    for (const listener of [...this.#listeners]) listener(snapshot);
  }
}
