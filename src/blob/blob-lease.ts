import { randomUUID } from "node:crypto";
import { setTimeout as delay } from "node:timers/promises";
import { BlobError, BlobNotFoundError } from "./blob-errors.js";
import type { BlobStore } from "./blob-store.js";
import { claimKey } from "./claim-key.js";

export interface BlobLeaseOptions {
  /**
   * How long one holder may keep the lease. The action's signal aborts when it
   * runs out, so a holder does not act once others may take the lease over.
   */
  readonly leaseMs: number;
  /** Clock skew tolerated between replicas: others wait this much past the expiry (default 30 s). */
  readonly clockSkewMs?: number;
  /** Gives up waiting for the lease (and aborts the action) when aborted. */
  readonly signal?: AbortSignal;
}

/** Lease generations are this many digits, so they sort as numbers. */
const generationDigits = 12;

/** What a lease generation object holds. */
interface LeaseRecord {
  readonly holder: string;
  readonly expires_at_ms: number;
}

/**
 * Runs `action` while holding the lease kept under `prefix`, which at most one
 * holder has at a time across every process sharing the store.
 *
 * The lease is a generation object `<prefix><n>` created with claimKey() (a
 * conditional put where the store has them, the claim fallback elsewhere)
 * holding its holder and expiry. The holder removes it when done, leaving
 * nothing behind. While it exists and has not expired, others wait; once it
 * expired (a crashed holder), the next holder claims n+1 and removes n. A
 * holder outliving its expiry has its action aborted, and removes its
 * generation only if it still holds it.
 */
export async function withBlobLease<T>(
  store: BlobStore,
  prefix: string,
  options: BlobLeaseOptions,
  action: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const holder = randomUUID();
  const { key, expiresAtMs } = await acquire(store, prefix, holder, options);
  // A timer of our own, not AbortSignal.timeout(): on Node 20 one inside AbortSignal.any() can be collected and never fire.
  const expiry = new AbortController();
  const timer = setTimeout(
    () => expiry.abort(new DOMException(`the lease ${key} ran out after ${options.leaseMs} ms`, "TimeoutError")),
    Math.max(0, expiresAtMs - Date.now()),
  );
  const signal = options.signal ? AbortSignal.any([options.signal, expiry.signal]) : expiry.signal;
  try {
    return await action(signal);
  } finally {
    clearTimeout(timer);
    const record = await readRecord(store, key).catch(() => undefined);
    if (record?.holder === holder) await store.delete(key).catch(() => undefined);
  }
}

async function acquire(
  store: BlobStore,
  prefix: string,
  holder: string,
  options: BlobLeaseOptions,
): Promise<{ key: string; expiresAtMs: number }> {
  const skewMs = options.clockSkewMs ?? 30_000;
  for (let attempt = 0; ; attempt += 1) {
    options.signal?.throwIfAborted();
    const newest = await newestGeneration(store, prefix);
    const record = newest === 0 ? undefined : await readRecord(store, generationKey(prefix, newest));
    if (newest === 0 || (record !== undefined && Date.now() > record.expires_at_ms + skewMs)) {
      const key = generationKey(prefix, newest + 1);
      const expiresAtMs = Date.now() + options.leaseMs;
      const body = Buffer.from(JSON.stringify({ holder, expires_at_ms: expiresAtMs } satisfies LeaseRecord));
      if ((await claimKey(store, key, body)).won) {
        if (newest > 0) await store.delete(generationKey(prefix, newest)).catch(() => undefined);
        return { key, expiresAtMs };
      }
    }
    // Held by someone else: no event crosses replicas, so poll with a growing, jittered wait.
    await delay(Math.random() * Math.min(5 * 2 ** attempt, 250), undefined, options.signal ? { signal: options.signal } : {});
  }
}

/** The highest generation under the prefix, 0 when there is none. */
async function newestGeneration(store: BlobStore, prefix: string): Promise<number> {
  let newest = 0;
  for await (const info of store.listAll(prefix)) {
    const match = /^(\d+)$/.exec(info.key.slice(prefix.length));
    if (match !== null) newest = Math.max(newest, Number(match[1]));
  }
  return newest;
}

/** The generation's record; undefined when it was removed meanwhile. */
async function readRecord(store: BlobStore, key: string): Promise<LeaseRecord | undefined> {
  let text = "";
  try {
    for await (const chunk of (await store.get(key)).body) text += Buffer.from(chunk).toString("utf8");
  } catch (error) {
    if (error instanceof BlobNotFoundError) return undefined;
    throw error;
  }
  try {
    const record = JSON.parse(text) as Partial<LeaseRecord>;
    if (typeof record.holder === "string" && typeof record.expires_at_ms === "number") return record as LeaseRecord;
  } catch {
    // reported below
  }
  throw new BlobError(`lease ${JSON.stringify(key)} is not a lease record; remove it to free the lease`);
}

function generationKey(prefix: string, generation: number): string {
  return `${prefix}${String(generation).padStart(generationDigits, "0")}`;
}
