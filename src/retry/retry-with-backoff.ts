import { setTimeout as delay } from "node:timers/promises";

/**
 * Bounded exponential backoff with jitter: after attempt n, wait a random time
 * between half of and all of min(maxBackoffMs, initialBackoffMs * 2^(n-1)), so
 * computes that failed together (a store restarting) do not retry in lockstep.
 */
export interface BackoffPolicy {
  readonly maxAttempts: number;
  readonly initialBackoffMs: number;
  readonly maxBackoffMs: number;
}

export interface RetryHooks {
  readonly signal: AbortSignal;
  /** False stops retrying at once (the error cannot go away by trying again). */
  isRetryable(error: unknown): boolean;
  /** Called before waiting for the next attempt. */
  onRetry?(attempt: number, error: unknown, delayMs: number): void;
}

/** The wait after attempt `attempt`; `random` (in [0, 1)) picks the point in the jitter range. */
export function backoffDelayMs(policy: Pick<BackoffPolicy, "initialBackoffMs" | "maxBackoffMs">, attempt: number, random: () => number = Math.random): number {
  const ceilingMs = Math.min(policy.maxBackoffMs, policy.initialBackoffMs * 2 ** (attempt - 1));
  return ceilingMs / 2 + random() * (ceilingMs / 2);
}

/** Runs `attempt(1)`, `attempt(2)`, … until one resolves; rethrows the last error. */
export async function retryWithBackoff<T>(
  attempt: (n: number) => Promise<T>,
  policy: BackoffPolicy,
  hooks: RetryHooks,
): Promise<T> {
  for (let n = 1; ; n += 1) {
    try {
      return await attempt(n);
    } catch (error) {
      if (n >= policy.maxAttempts || hooks.signal.aborted || !hooks.isRetryable(error)) throw error;
      const delayMs = backoffDelayMs(policy, n);
      hooks.onRetry?.(n, error, delayMs);
      await delay(delayMs, undefined, { signal: hooks.signal });
    }
  }
}
