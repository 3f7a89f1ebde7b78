import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { AuthError, claimsKey } from "../auth/index.js";
import type { ServerAuth } from "./server-options.js";

const bearer = /^Bearer\s+(\S+)\s*$/i;

/**
 * Verifies `authorization: Bearer <jwt>` and puts the claims under claimsKey.
 * Calls to `publicMethods` ("pkg.Service/Method") pass without a token; in
 * insecure mode every call passes and no claims are set.
 */
export function createAuthInterceptor(auth: ServerAuth, publicMethods: ReadonlySet<string>): Interceptor {
  return (next) => async (req) => {
    if ("insecure" in auth || publicMethods.has(`${req.service.typeName}/${req.method.name}`)) {
      return next(req);
    }
    const header = req.header.get("authorization");
    if (header === null) {
      throw new ConnectError("missing bearer token: send 'authorization: Bearer <jwt>'", Code.Unauthenticated);
    }
    const match = bearer.exec(header);
    if (match === null) {
      throw new ConnectError("malformed authorization header: expected 'Bearer <jwt>'", Code.Unauthenticated);
    }
    try {
      req.contextValues.set(claimsKey, await auth.verifier.verify(match[1]!));
    } catch (err) {
      if (err instanceof AuthError) throw new ConnectError(err.message, Code.Unauthenticated);
      throw err;
    }
    return next(req);
  };
}
