import { setMaxListeners } from "node:events";

/**
 * Runs `work` on every item, `concurrency` at a time, handing each a signal
 * that aborts when the caller's does or another item failed; the first
 * failure is rethrown once every running item has settled.
 */
export async function forEachConcurrently<T>(
  items: readonly T[],
  concurrency: number,
  work: (item: T, signal: AbortSignal) => Promise<void>,
  signal?: AbortSignal,
): Promise<void> {
  const stop = new AbortController();
  const combined = signal ? AbortSignal.any([signal, stop.signal]) : stop.signal;
  // Every item in flight may listen on it (a get, a put, a pipeline).
  setMaxListeners(4 * concurrency + 10, combined);
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (next < items.length && !combined.aborted) {
      const item = items[next++]!;
      try {
        await work(item, combined);
      } catch (error) {
        failure ??= { error };
        stop.abort(error);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  if (failure) throw failure.error;
  signal?.throwIfAborted();
}
