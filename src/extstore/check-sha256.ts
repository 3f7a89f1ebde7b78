import { Code, ConnectError } from "@connectrpc/connect";
import { quoteInput } from "../errors/index.js";

const sha256Hex = /^[0-9a-f]{64}$/;

/** A bundle identity: 64 lowercase hex digits. */
export function checkSha256(sha256: string, field = "sha256"): string {
  if (!sha256Hex.test(sha256)) {
    throw new ConnectError(
      `${field} ${quoteInput(sha256)} is not a sha256; give 64 lowercase hex digits`,
      Code.InvalidArgument,
    );
  }
  return sha256;
}
