import { decodeProtectedHeader, errors, jwtVerify, type JWTPayload } from "jose";
import { AuthError } from "./auth-error.js";
import { scopes, type Claims, type Scope } from "./claims.js";
import type { VerifyKey, VerifyKeySet } from "./verify-key-set.js";

/** Verifies bearer tokens and returns their claims, or throws AuthError. */
export interface TokenVerifier {
  verify(token: string): Promise<Claims>;
  /**
   * Verifies signature, algorithm, exp and iat as verify() does, and returns
   * the payload as it is: for routes that judge other claims than pgmesh's
   * scope (Neon's endpoint_storage claims).
   */
  verifyPayload(token: string): Promise<JWTPayload>;
}

export interface TokenVerifierOptions {
  /** Accepted clock skew for exp/nbf/iat, in seconds (default 30, DESIGN.md "Auth"). */
  readonly clockToleranceSec?: number;
  /** The clock, for tests (default Date.now). */
  readonly now?: () => number;
}

const algorithms = ["EdDSA", "Ed25519"];

/** Longest bearer token accepted, in bytes: pgmesh's tokens are a few hundred. */
export const maxBearerTokenBytes = 8 * 1024;

/** Throws AuthError "too_large" for a token over maxBearerTokenBytes: servers refuse it, clients do not send it. */
export function checkBearerTokenSize(token: string): void {
  const tokenBytes = Buffer.byteLength(token);
  if (tokenBytes > maxBearerTokenBytes) {
    throw new AuthError("too_large", `bearer token of ${tokenBytes} bytes is over the limit of ${maxBearerTokenBytes} bytes (8 KiB)`);
  }
}

export function createTokenVerifier(keySet: VerifyKeySet, options: TokenVerifierOptions = {}): TokenVerifier {
  const clockTolerance = options.clockToleranceSec ?? 30;
  const now = options.now ?? Date.now;
  const byKid = new Map(keySet.keys.map((k) => [k.kid, k]));

  const verifier: TokenVerifier = {
    verify: async (token) => toClaims(await verifier.verifyPayload(token)),

    async verifyPayload(token: string): Promise<JWTPayload> {
      checkBearerTokenSize(token);
      const kid = readKid(token);
      const named = kid === undefined ? undefined : byKid.get(kid);
      // A token names its key by kid; keys without a kid of their own (PEM) are tried in turn.
      const candidates: readonly VerifyKey[] = named ? [named] : keySet.keys.filter((k) => kid === undefined || !k.kidGiven);
      const unknownKey = (): AuthError =>
        new AuthError("unknown_key", `token is signed with key "${kid}", which this server does not know (--auth-keys)`);
      if (candidates.length === 0) throw unknownKey();
      let lastError: unknown;
      for (const { key } of candidates) {
        try {
          const { payload } = await jwtVerify(token, key, {
            algorithms,
            clockTolerance,
            requiredClaims: ["exp"],
            currentDate: new Date(now()),
          });
          refuseIssuedInFuture(payload, now(), clockTolerance);
          return payload;
        } catch (err) {
          if (!(err instanceof errors.JWSSignatureVerificationFailed)) throw toAuthError(err);
          lastError = err;
        }
      }
      throw kid !== undefined && named === undefined ? unknownKey() : toAuthError(lastError);
    },
  };
  return verifier;
}

/** jose checks iat only against a maximum age: a token minted by a signer whose clock runs ahead is refused here. */
function refuseIssuedInFuture(payload: JWTPayload, nowMs: number, toleranceSec: number): void {
  if (typeof payload.iat === "number" && payload.iat > nowMs / 1000 + toleranceSec) {
    const issued = new Date(payload.iat * 1000).toISOString();
    throw new AuthError("bad_claims", `token is issued at ${issued}, more than ${toleranceSec} s in the future; check the signer's clock`);
  }
}

function readKid(token: string): string | undefined {
  try {
    return decodeProtectedHeader(token).kid;
  } catch {
    throw new AuthError("malformed", "bearer token is not a JWT (expected header.payload.signature in base64url)");
  }
}

function toAuthError(err: unknown): AuthError {
  if (err instanceof AuthError) return err;
  if (err instanceof errors.JWTExpired) {
    return new AuthError("expired", `token expired at ${new Date(Number(err.payload.exp) * 1000).toISOString()}; mint a new one`);
  }
  if (err instanceof errors.JWSSignatureVerificationFailed) {
    return new AuthError("bad_signature", "token signature does not verify with any key of this server (--auth-keys)");
  }
  if (err instanceof errors.JOSEAlgNotAllowed) {
    return new AuthError("malformed", "token is not signed with EdDSA (Ed25519), the only algorithm pgmesh accepts");
  }
  if (err instanceof errors.JWTClaimValidationFailed) {
    return new AuthError("bad_claims", `token claim "${err.claim}" is not acceptable: ${err.message}`);
  }
  return new AuthError("malformed", `bearer token cannot be parsed: ${(err as Error).message}`);
}

function toClaims(payload: JWTPayload): Claims {
  const scope = payload["scope"];
  if (typeof scope !== "string" || !(scopes as readonly string[]).includes(scope)) {
    throw new AuthError("bad_claims", `token scope ${JSON.stringify(scope)} is not one of ${scopes.join(", ")}`);
  }
  return {
    scope: scope as Scope,
    tenantId: optionalString(payload, "tenant_id"),
    timelineId: optionalString(payload, "timeline_id"),
    endpointId: optionalString(payload, "endpoint_id"),
    subject: optionalString(payload, "sub"),
    expiresAt: new Date(Number(payload.exp) * 1000),
  };
}

function optionalString(payload: JWTPayload, name: string): string | undefined {
  const value = payload[name];
  if (value === undefined) return undefined;
  if (typeof value !== "string") {
    throw new AuthError("bad_claims", `token claim "${name}" must be a string, got ${JSON.stringify(value)}`);
  }
  return value;
}
