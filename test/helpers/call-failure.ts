import { ConnectError } from "@connectrpc/connect";

type Call = Promise<unknown> | AsyncIterable<unknown> | (() => Promise<unknown> | AsyncIterable<unknown>);

/**
 * The ConnectError a call fails with: a unary call's promise, a server
 * stream (read to its end), or a function returning either. Throws when the
 * call succeeds.
 */
export async function callFailure(call: Call): Promise<ConnectError> {
  try {
    const started = typeof call === "function" ? call() : call;
    if (Symbol.asyncIterator in started) {
      for await (const _ of started);
    } else {
      await started;
    }
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("the call succeeded but should have failed");
}
