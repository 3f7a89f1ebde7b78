import { ConnectError } from "@connectrpc/connect";

/** The ConnectError a call fails with; throws when the call succeeds. */
export async function callFailure(call: Promise<unknown> | (() => Promise<unknown>)): Promise<ConnectError> {
  try {
    await (typeof call === "function" ? call() : call);
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("the call succeeded but should have failed");
}
