import { quoteInput } from "../errors/index.js";

/** Why a bundle was refused: a malformed or unsafe tar, or one over a size limit. */
export type BundleRejection = "invalid" | "too_large";

/**
 * A bundle that cannot be accepted. `entry` names the tar entry at fault
 * (undefined when the fault is the bundle as a whole); nothing was stored.
 */
export class BundleRejectedError extends Error {
  override readonly name = "BundleRejectedError";

  constructor(
    readonly rejection: BundleRejection,
    readonly entry: string | undefined,
    readonly reason: string,
  ) {
    super(entry === undefined ? `bundle refused: ${reason}` : `bundle entry ${quoteInput(entry)} refused: ${reason}`);
  }
}
