import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

type Next = Parameters<Interceptor>[0];
type Request = Parameters<Next>[0];
type Response = Awaited<ReturnType<Next>>;

/**
 * Calls `next(req)` and reports how the call ended, once: `done(undefined)`
 * on success, `done(error)` on failure. For a server stream that is when the
 * stream ends; a stream the client abandons ends as CANCELED.
 */
export async function observeCall(next: Next, req: Request, done: (error: unknown) => void): Promise<Response> {
  let res;
  try {
    res = await next(req);
  } catch (err) {
    done(err);
    throw err;
  }
  if (!res.stream) {
    done(undefined);
    return res;
  }
  const messages = res.message;
  return {
    ...res,
    message: (async function* () {
      let outcome: unknown = new ConnectError("client went away", Code.Canceled);
      try {
        yield* messages;
        outcome = undefined;
      } catch (err) {
        outcome = err;
        throw err;
      } finally {
        done(outcome);
      }
    })(),
  };
}
