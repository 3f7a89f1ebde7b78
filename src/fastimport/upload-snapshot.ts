import { setMaxListeners } from "node:events";
import { createReadStream } from "node:fs";
import path from "node:path";
import type { BlobStore } from "../blob/index.js";
import type { SnapshotFile } from "./snapshot-files.js";

export interface UploadOptions {
  readonly store: BlobStore;
  readonly pgdata: string;
  /** Key prefix the files go under, ending in "/". */
  readonly keyPrefix: string;
  readonly concurrency: number;
  readonly signal?: AbortSignal;
  /** Called as bytes leave: the running totals. */
  readonly onProgress?: (bytesDone: number, filesDone: number) => void;
}

/** Streamed reads of at most this many bytes at a time; no file is ever held whole. */
const chunkBytes = 1024 * 1024;

/**
 * Puts every file under keyPrefix, `concurrency` at a time, each streamed from
 * disk with its size announced (a file that changed size fails the put).
 * The first failure stops the other workers and is rethrown.
 */
export async function uploadSnapshot(files: readonly SnapshotFile[], options: UploadOptions): Promise<{ bytes: number }> {
  let bytesDone = 0;
  let filesDone = 0;
  let next = 0;
  // Largest first: the long puts start at once and the small ones fill the gaps, so no big file runs alone at the end.
  const queue = [...files].sort((a, b) => b.size - a.size);
  const stop = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, stop.signal]) : stop.signal;
  // Every put in flight listens on it.
  setMaxListeners(options.concurrency + 10, signal);
  const counted = async function* (source: AsyncIterable<Buffer>): AsyncGenerator<Uint8Array> {
    for await (const chunk of source) {
      bytesDone += chunk.byteLength;
      options.onProgress?.(bytesDone, filesDone);
      yield chunk;
    }
  };
  const worker = async (): Promise<void> => {
    while (next < queue.length && !signal.aborted) {
      const file = queue[next++]!;
      const stream = createReadStream(path.join(options.pgdata, file.relativePath), { highWaterMark: chunkBytes });
      try {
        await options.store.put(`${options.keyPrefix}${file.relativePath}`, counted(stream), { expectedBytes: file.size, signal });
      } finally {
        stream.destroy();
      }
      filesDone += 1;
      options.onProgress?.(bytesDone, filesDone);
    }
  };
  const workers = Array.from({ length: Math.min(options.concurrency, files.length) }, () =>
    worker().catch((error: unknown) => {
      stop.abort(error);
      throw error;
    }),
  );
  const results = await Promise.allSettled(workers);
  const failed = results.find((result): result is PromiseRejectedResult => result.status === "rejected");
  if (failed) throw stop.signal.reason ?? failed.reason;
  if (options.signal?.aborted) throw options.signal.reason;
  return { bytes: bytesDone };
}
