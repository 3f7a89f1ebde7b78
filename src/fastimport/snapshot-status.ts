import type { BlobStore } from "../blob/index.js";

/** The keys of a snapshot under prefix P (the layout the README gives for fast-import snapshots). */
export interface SnapshotKeys {
  /** "P/pgdata/": every file of PGDATA goes under it. */
  readonly pgdataPrefix: string;
  /** "P/status/pgdata": {"done": true} only once every file is stored, written last. */
  readonly pgdataStatus: string;
  /** "P/status/fast_import": the job's outcome, timings and byte counts, always written. */
  readonly jobStatus: string;
}

export function snapshotKeys(prefix: string): SnapshotKeys {
  const base = prefix === "" ? "" : `${prefix}/`;
  return { pgdataPrefix: `${base}pgdata/`, pgdataStatus: `${base}status/pgdata`, jobStatus: `${base}status/fast_import` };
}

/** Stores `value` as one JSON object. */
export async function putJson(store: BlobStore, key: string, value: unknown): Promise<void> {
  const body = Buffer.from(`${JSON.stringify(value)}\n`);
  await store.put(key, (async function* () { yield body; })(), { expectedBytes: body.byteLength });
}

/** The JSON object at `key`; undefined when absent or not JSON. */
export async function getJson(store: BlobStore, key: string): Promise<Record<string, unknown> | undefined> {
  if ((await store.head(key)) === undefined) return undefined;
  const chunks: Buffer[] = [];
  for await (const chunk of (await store.get(key)).body) chunks.push(Buffer.from(chunk));
  try {
    const value: unknown = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    return typeof value === "object" && value !== null ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
