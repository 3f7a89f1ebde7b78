import { randomUUID } from "node:crypto";
import { setTimeout as delay } from "node:timers/promises";
import { BlobClaimUnsettledError, BlobNotFoundError, BlobPreconditionFailedError } from "./blob-errors.js";
import type { BlobInfo, BlobStore } from "./blob-store.js";
import { bytesBody } from "./bytes-body.js";

/** The outcome of claimKey(): the winner's object, or what the winner stored. */
export type ClaimResult =
  | { readonly won: true; readonly info: BlobInfo }
  | { readonly won: false; readonly holder: Uint8Array };

export interface ClaimOptions {
  /** How long to keep trying while other claimers contend; default 30 s. */
  readonly settleTimeMs?: number;
}

/**
 * A candidate this much older than ours (by the store's own clock) belongs to
 * a claimer that crashed between writing it and removing it: ignore and sweep it.
 * A live claim takes milliseconds from candidate to key; only a claimer paused
 * for longer than this between its listing and its put could still overwrite.
 */
const staleCandidateMs = 30_000;

/**
 * Creates `key` with `body` unless it exists, with exactly one winner among
 * any number of concurrent claimers in any number of processes; a loser
 * learns what the winner stored.
 *
 * Where the store enforces conditional writes this is one put with
 * ifNoneMatch "*". Elsewhere (s3rver, S3-compatible servers that ignore
 * conditions) each claimer puts a candidate `<key>.claims/<time>-<uuid>` and
 * then lists `<key>.claims/`; it may write `<key>` only if its candidate is
 * the only one listed, and `<key>` still does not exist after that listing.
 * At most one claimer sees only itself: S3 lists with strong read-after-write
 * consistency, so if A's listing missed B's candidate, B's put came after A's
 * listing, hence after A's own put, and B's listing sees A's candidate (A
 * removes it only once `<key>` exists, which B's check after its listing then
 * sees). Claimers that see others withdraw their candidate and retry after a
 * random wait, so one of them is soon alone; once `<key>` exists every
 * claimer loses.
 */
export async function claimKey(
  store: BlobStore,
  key: string,
  body: Uint8Array,
  options: ClaimOptions = {},
): Promise<ClaimResult> {
  const deadline = Date.now() + (options.settleTimeMs ?? 30_000);
  for (let attempt = 0; ; attempt += 1) {
    const roundStarted = Date.now();
    const result = store.conditionalWrites
      ? await claimWithCondition(store, key, body)
      : await claimWithCandidates(store, key, body);
    if (result !== undefined) return result;
    if (Date.now() > deadline) throw new BlobClaimUnsettledError(key, attempt + 1);
    // Contenders collide while their rounds overlap: wait in units of a round as this
    // store answers now (a slow or loaded store makes rounds long), doubling per attempt.
    const roundMs = Math.max(Date.now() - roundStarted, 5);
    await delay(Math.random() * roundMs * Math.min(2 ** attempt, 16));
  }
}

/** undefined: the key was deleted between the failed put and the read; try again. */
async function claimWithCondition(store: BlobStore, key: string, body: Uint8Array): Promise<ClaimResult | undefined> {
  try {
    return { won: true, info: await store.put(key, bytesBody(body), { ifNoneMatch: "*" }) };
  } catch (error) {
    if (!(error instanceof BlobPreconditionFailedError)) throw error;
    return lostTo(store, key);
  }
}

/** undefined: others contend right now; withdraw and try again. */
async function claimWithCandidates(store: BlobStore, key: string, body: Uint8Array): Promise<ClaimResult | undefined> {
  if ((await store.head(key)) !== undefined) return lostTo(store, key);
  const claims = `${key}.claims/`;
  const candidate = `${claims}${Date.now().toString().padStart(15, "0")}-${randomUUID()}`;
  const mine = await store.put(candidate, bytesBody(body));
  try {
    const others: BlobInfo[] = [];
    let listedMine: BlobInfo | undefined;
    for await (const info of store.listAll(claims)) {
      if (info.key === candidate) listedMine = info;
      else others.push(info);
    }
    const mineAt = (listedMine ?? mine).modified.getTime();
    const live = others.filter((other) => mineAt - other.modified.getTime() <= staleCandidateMs);
    for (const stale of others.filter((other) => !live.includes(other))) await store.delete(stale.key);
    if (listedMine === undefined || live.length > 0) return undefined;
    if ((await store.head(key)) !== undefined) return lostTo(store, key);
    return { won: true, info: await store.put(key, bytesBody(body)) };
  } finally {
    await store.delete(candidate);
  }
}

async function lostTo(store: BlobStore, key: string): Promise<ClaimResult | undefined> {
  try {
    const chunks: Uint8Array[] = [];
    for await (const chunk of (await store.get(key)).body) chunks.push(chunk);
    return { won: false, holder: Buffer.concat(chunks) };
  } catch (error) {
    if (error instanceof BlobNotFoundError) return undefined;
    throw error;
  }
}
