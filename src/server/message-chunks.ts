/** Largest bytes field a stream message carries (common.proto, DESIGN.md: chunks of at most 1 MiB). */
export const maxChunkBytes = 1024 * 1024;

/** Passes chunks through, splitting any larger than `limit` bytes. */
export async function* splitChunks(
  body: AsyncIterable<Uint8Array>,
  limit: number = maxChunkBytes,
): AsyncGenerator<Uint8Array> {
  for await (const chunk of body) {
    for (let offset = 0; offset < chunk.byteLength; offset += limit) {
      yield chunk.subarray(offset, Math.min(offset + limit, chunk.byteLength));
    }
  }
}
