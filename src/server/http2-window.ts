/**
 * Default HTTP/2 flow-control window, per stream and per connection, in bytes:
 * wide enough that streams of 1 MiB chunks do not stall on WINDOW_UPDATE round
 * trips (the protocol default is 65 535), narrow enough that a slow reader
 * still stops the writer after a few MiB.
 */
export const defaultHttp2WindowBytes = 8 * 1024 * 1024;

/** The largest window HTTP/2 allows (RFC 9113, 6.9.1). */
const maxWindowBytes = 2 ** 31 - 1;

/** Returns `value` if it is a usable HTTP/2 window size; throws a RangeError naming `owner` otherwise. */
export function checkHttp2WindowBytes(owner: string, value: number): number {
  if (!Number.isInteger(value) || value < 65_535 || value > maxWindowBytes) {
    throw new RangeError(`${owner} http2WindowBytes must be an integer in 65535..${maxWindowBytes}, got ${value}`);
  }
  return value;
}
