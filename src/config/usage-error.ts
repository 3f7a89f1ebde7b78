/** Bad command-line input: the binary prints the message and exits with code 2. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}
