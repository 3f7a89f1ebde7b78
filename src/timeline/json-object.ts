import { Code } from "@connectrpc/connect";
import { BlobNotFoundError, claimKey, type BlobStore } from "../blob/index.js";
import { storeCall, TimelineError } from "./timeline-error.js";
import type { TimelineRef } from "./timeline-keys.js";

/** The largest JSON object a timeline keeps (manifests of big clusters included). */
const maxJsonBytes = 256 * 1024 * 1024;

/** A body of one buffer, for store.put(). */
export async function* bodyOf(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  yield bytes;
}

/** Puts `value` as JSON at `key`. */
export async function putJson(store: BlobStore, timeline: TimelineRef, key: string, value: unknown): Promise<void> {
  const bytes = Buffer.from(`${JSON.stringify(value)}\n`);
  await storeCall(timeline, key, "write", () => store.put(key, bodyOf(bytes), { expectedBytes: bytes.length }));
}

/** The JSON object at `key`, or undefined when there is none; DATA_LOSS when it is not JSON. */
export async function getJson(store: BlobStore, timeline: TimelineRef, key: string): Promise<unknown> {
  const text = await storeCall(timeline, key, "read", async () => {
    if (!(await store.head(key))) return undefined;
    const object = await store.get(key).catch((err: unknown) => {
      // Deleted between head and get: as absent.
      if (err instanceof BlobNotFoundError) return undefined;
      throw err;
    });
    if (!object) return undefined;
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of object.body) {
      size += chunk.byteLength;
      if (size > maxJsonBytes) throw new TimelineError(timeline, `object is larger than ${maxJsonBytes} bytes`, Code.DataLoss, key);
      chunks.push(Buffer.from(chunk));
    }
    return Buffer.concat(chunks).toString("utf8");
  });
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new TimelineError(timeline, "object is not valid JSON (corrupt or truncated)", Code.DataLoss, key);
  }
}

export type JsonClaim = { readonly won: true } | { readonly won: false; readonly holder: unknown };

/**
 * Creates `key` with `value` as JSON unless it exists (exactly one of any
 * number of concurrent claimers wins, on every store: claimKey); a loser
 * gets the winner's value.
 */
export async function claimJson(store: BlobStore, timeline: TimelineRef, key: string, value: unknown): Promise<JsonClaim> {
  const result = await storeCall(timeline, key, "claim", () => claimKey(store, key, Buffer.from(`${JSON.stringify(value)}\n`)));
  if (result.won) return { won: true };
  try {
    return { won: false, holder: JSON.parse(Buffer.from(result.holder).toString("utf8")) as unknown };
  } catch {
    throw new TimelineError(timeline, "object is not valid JSON (corrupt or truncated)", Code.DataLoss, key);
  }
}
