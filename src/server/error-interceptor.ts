import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { blobErrorToConnect } from "../blob/index.js";

/**
 * Turns anything a handler throws that is not a ConnectError into one: storage
 * and Node system errors by the one mapping (blobErrorToConnect), anything
 * else into INTERNAL with a generic message; the original error stays as
 * `cause` for the log and never reaches the client. An error after the call's signal was aborted
 * (deadline, client cancel, shutdown) becomes the abort reason.
 */
export function createErrorInterceptor(): Interceptor {
  return (next) => async (req) => {
    const normalise = (err: unknown): ConnectError => toConnectError(err, req.signal);
    let res;
    try {
      res = await next(req);
    } catch (err) {
      throw normalise(err);
    }
    if (!res.stream) return res;
    const messages = res.message;
    return {
      ...res,
      message: (async function* () {
        try {
          yield* messages;
        } catch (err) {
          throw normalise(err);
        }
      })(),
    };
  };
}

export function toConnectError(err: unknown, signal: AbortSignal): ConnectError {
  if (err instanceof ConnectError) return err;
  if (signal.aborted) return ConnectError.from(signal.reason);
  const mapped = blobErrorToConnect(err);
  if (mapped instanceof ConnectError) return mapped;
  return new ConnectError("internal server error; the server log has the cause", Code.Internal, undefined, undefined, err);
}
