/** A put body of bytes already in memory (small records: claims, leases, JSON). */
export async function* bytesBody(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  yield bytes;
}
