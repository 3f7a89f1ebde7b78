/** Largest bytes field in a stream message (DESIGN.md: chunks of at most 1 MiB). */
export const maxChunkBytes = 1024 * 1024;

/** Splits chunks larger than `maxBytes`; smaller ones pass through unchanged. */
export async function* limitChunkSize(
  body: AsyncIterable<Uint8Array>,
  maxBytes = maxChunkBytes,
): AsyncGenerator<Uint8Array> {
  for await (const chunk of body) {
    for (let offset = 0; offset < chunk.byteLength; offset += maxBytes) {
      yield chunk.subarray(offset, Math.min(offset + maxBytes, chunk.byteLength));
    }
  }
}
