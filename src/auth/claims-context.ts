import { createContextKey } from "@connectrpc/connect";
import type { Claims } from "./claims.js";

/**
 * The verified claims of the call's bearer token, set by the server's auth
 * interceptor. Undefined on public methods and on servers run with
 * --insecure-no-auth.
 */
export const claimsKey = createContextKey<Claims | undefined>(undefined, {
  description: "pgmesh verified claims",
});

/** How the server authenticates calls: "verified" (bearer JWTs) or "insecure" (--insecure-no-auth). */
export type AuthMode = "verified" | "insecure";

/** The server's auth mode, set for every call; authorization helpers pass everything in "insecure". */
export const authModeKey = createContextKey<AuthMode>("verified", {
  description: "pgmesh auth mode",
});
