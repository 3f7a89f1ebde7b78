import { Code, ConnectError } from "@connectrpc/connect";
import { blobErrorToConnect } from "../blob/index.js";
import { describeTimeline, type TimelineRef } from "./timeline-keys.js";

/**
 * Anything wrong with a timeline's durable data or its store: names the
 * timeline and, where one is involved, the object key. A ConnectError, so its
 * code (NOT_FOUND, FAILED_PRECONDITION, DATA_LOSS, UNAVAILABLE…) travels as is.
 */
export class TimelineError extends ConnectError {
  constructor(
    readonly timeline: TimelineRef,
    detail: string,
    code: Code,
    readonly key?: string,
    cause?: unknown,
  ) {
    super(`timeline ${describeTimeline(timeline)}: ${detail}${key ? ` (object ${key})` : ""}`, code, undefined, undefined, cause);
    // ConnectError pins its own prototype and recognises its kind by name "ConnectError": keep both working.
    Object.setPrototypeOf(this, new.target.prototype);
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === "object" && value !== null && TimelineError.prototype.isPrototypeOf(value);
  }
}

/**
 * Runs one store call about `key`, turning what the store throws into a
 * TimelineError that names the timeline and the key (UNAVAILABLE when the
 * store cannot be reached, the blob error's own code otherwise).
 */
export async function storeCall<T>(timeline: TimelineRef, key: string, what: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    if (err instanceof TimelineError) throw err;
    const mapped = blobErrorToConnect(err);
    if (mapped instanceof ConnectError) {
      const detail = mapped.code === Code.Unavailable ? `the store is unavailable: could not ${what}` : `could not ${what}`;
      throw new TimelineError(timeline, `${detail}: ${mapped.rawMessage}`, mapped.code, key, err);
    }
    const message = err instanceof Error ? err.message : String(err);
    throw new TimelineError(timeline, `could not ${what}: ${message}`, Code.Unavailable, key, err);
  }
}
