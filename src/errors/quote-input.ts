/** Most characters of client input an error message quotes. */
export const maxQuotedChars = 80;

/**
 * `value` quoted for an error message: JSON-escaped and cut to 80 characters,
 * with the full length named when cut. Messages travel in response headers
 * (grpc-message), so quoting a 100 KB input whole would break the response.
 */
export function quoteInput(value: string): string {
  if (value.length <= maxQuotedChars) return JSON.stringify(value);
  return `${JSON.stringify(value.slice(0, maxQuotedChars))}… (${value.length} characters)`;
}
