import { pack as createPack, type Pack } from "tar-stream";
import { BlobNotFoundError, type BlobStore } from "../blob/index.js";

type Sink = ReturnType<Pack["entry"]>;

/**
 * Streams every object under `prefix` as one POSIX tar, entries named by the
 * key without the prefix, mode 0600. Reads one object at a time and writes it
 * with backpressure: memory stays bounded whatever the file sizes. Objects
 * deleted between listing and reading are skipped. Stopping the iteration
 * (or aborting `signal`) stops the reads.
 */
export async function* endpointArchive(
  store: BlobStore,
  prefix: string,
  signal?: AbortSignal,
): AsyncGenerator<Uint8Array> {
  const pack = createPack();
  const stop = new AbortController();
  const onAbort = () => stop.abort(signal?.reason);
  if (signal?.aborted) onAbort();
  else signal?.addEventListener("abort", onAbort, { once: true });
  const stopped = aborted(stop.signal);
  stopped.catch(() => undefined);
  const producer = (async () => {
    for await (const info of store.listAll(prefix)) {
      stop.signal.throwIfAborted();
      let object;
      try {
        object = await store.get(info.key, { signal: stop.signal });
      } catch (error) {
        if (error instanceof BlobNotFoundError) continue;
        throw error;
      }
      const header = {
        name: info.key.slice(prefix.length),
        size: object.info.size,
        mode: 0o600,
        mtime: object.info.modified,
      };
      await writeEntry(pack, header, object.body, stopped);
    }
    pack.finalize();
  })();
  producer.catch((error: unknown) => pack.destroy(error as Error));
  try {
    for await (const chunk of pack as AsyncIterable<Uint8Array>) yield chunk;
    await producer;
  } finally {
    signal?.removeEventListener("abort", onAbort);
    stop.abort(new Error("archive stream closed"));
    pack.destroy();
  }
}

async function writeEntry(
  pack: Pack,
  header: Parameters<Pack["entry"]>[0],
  body: AsyncIterable<Uint8Array>,
  stopped: Promise<never>,
): Promise<void> {
  let settle!: (error?: Error | null) => void;
  const written = new Promise<void>((resolve, reject) => {
    settle = (error) => (error ? reject(error) : resolve());
  });
  written.catch(() => undefined); // awaited below unless the body fails first
  const entry = pack.entry(header, (error) => settle(error));
  entry.on("error", () => undefined); // reported through the callback and the pack
  for await (const chunk of body) {
    if (!entry.write(chunk)) await Promise.race([drained(entry), stopped]);
  }
  entry.end(undefined);
  await Promise.race([written, stopped]);
}

/** Resolves when the entry takes more data. */
function drained(entry: Sink): Promise<void> {
  return new Promise((resolve) => entry.once("drain", () => resolve()));
}

/** Rejects with the signal's reason once it aborts. */
function aborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    else signal.addEventListener("abort", () => reject(signal.reason), { once: true });
  });
}
