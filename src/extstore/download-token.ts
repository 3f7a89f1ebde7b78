import { createPublicKey } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { decodeProtectedHeader, errors, jwtVerify, SignJWT, type KeyInput } from "jose";
import type { SigningKey } from "../auth/index.js";

/**
 * A download token is a JWT signed by the store's own Ed25519 key (not the
 * mesh's bearer keys): `aud` pgmesh-extension-store/download, `tenant_id`,
 * `endpoint_id`, `bundles` (the sha256 of every bundle it may fetch), `iat`,
 * `exp`. It carries no `scope`, so no pgmesh server accepts it as a bearer
 * token, and a bearer token is never a download token.
 */
export const downloadTokenAudience = "pgmesh-extension-store/download";
const tokenType = "pgmesh-download+jwt";

export interface DownloadTokenClaims {
  readonly tenantId: string;
  readonly endpointId: string;
  readonly bundles: readonly string[];
  readonly expiresAt: Date;
}

/** A public key that verifies download tokens. */
export interface DownloadVerifyKey {
  readonly kid: string;
  readonly key: KeyInput;
}

/** Signs a download token valid for `ttlSec` from `nowMs` (a negative ttl mints an expired one). */
export async function signDownloadToken(
  signingKey: SigningKey,
  claims: Omit<DownloadTokenClaims, "expiresAt">,
  ttlSec: number,
  nowMs: number = Date.now(),
): Promise<{ token: string; expiresAt: Date }> {
  const nowSec = Math.floor(nowMs / 1000);
  const expSec = nowSec + Math.round(ttlSec);
  const token = await new SignJWT({
    tenant_id: claims.tenantId,
    endpoint_id: claims.endpointId,
    bundles: [...claims.bundles],
  })
    .setProtectedHeader({ alg: "EdDSA", typ: tokenType, kid: signingKey.kid })
    .setAudience(downloadTokenAudience)
    .setIssuedAt(nowSec)
    .setExpirationTime(expSec)
    .sign(signingKey.key);
  return { token, expiresAt: new Date(expSec * 1000) };
}

/** The public half of a signing key, to verify what it signed. */
export function verifyKeyOf(signingKey: SigningKey): DownloadVerifyKey {
  return { kid: signingKey.kid, key: createPublicKey(signingKey.key) };
}

/** Accepted clock skew between the store that signed and the one that verifies (DESIGN.md "Auth"). */
const clockToleranceSec = 30;

/**
 * Verifies a download token against the store's public key(s). Throws
 * ConnectError UNAUTHENTICATED for a missing, malformed, forged or expired token.
 */
export async function verifyDownloadToken(
  token: string,
  keys: readonly DownloadVerifyKey[],
  nowMs: number = Date.now(),
): Promise<DownloadTokenClaims> {
  if (token === "") {
    throw new ConnectError(
      "download_token is empty; ask the control plane for one (IssueDownloadToken) naming this bundle",
      Code.Unauthenticated,
    );
  }
  let kid: string | undefined;
  try {
    kid = decodeProtectedHeader(token).kid;
  } catch {
    throw new ConnectError("download_token is not a JWT (header.payload.signature)", Code.Unauthenticated);
  }
  const candidates = kid === undefined ? keys : keys.filter((k) => k.kid === kid);
  if (candidates.length === 0) {
    throw new ConnectError(
      `download_token is signed with key "${kid}", which this extension store does not know`,
      Code.Unauthenticated,
    );
  }
  let lastError: unknown;
  for (const { key } of candidates) {
    try {
      const { payload } = await jwtVerify(token, key, {
        algorithms: ["EdDSA"],
        audience: downloadTokenAudience,
        typ: tokenType,
        clockTolerance: clockToleranceSec,
        requiredClaims: ["exp", "tenant_id", "bundles"],
        currentDate: new Date(nowMs),
      });
      return claimsOf(payload);
    } catch (error) {
      lastError = error;
      if (!(error instanceof errors.JWSSignatureVerificationFailed)) break;
    }
  }
  throw unauthenticated(lastError);
}

function claimsOf(payload: Record<string, unknown>): DownloadTokenClaims {
  const { tenant_id: tenantId, endpoint_id: endpointId, bundles, exp } = payload;
  if (
    typeof tenantId !== "string" ||
    (endpointId !== undefined && typeof endpointId !== "string") ||
    !Array.isArray(bundles) ||
    !bundles.every((b) => typeof b === "string")
  ) {
    throw new ConnectError("download_token claims are malformed (tenant_id, endpoint_id, bundles)", Code.Unauthenticated);
  }
  return { tenantId, endpointId: endpointId ?? "", bundles, expiresAt: new Date(Number(exp) * 1000) };
}

function unauthenticated(error: unknown): ConnectError {
  if (error instanceof errors.JWTExpired) {
    const exp = new Date(Number(error.payload.exp) * 1000).toISOString();
    return new ConnectError(`download_token expired at ${exp}; ask the control plane for a new one`, Code.Unauthenticated);
  }
  if (error instanceof errors.JWSSignatureVerificationFailed) {
    return new ConnectError("download_token signature does not verify with this store's key", Code.Unauthenticated);
  }
  if (error instanceof errors.JWTClaimValidationFailed) {
    return new ConnectError(`download_token is not a download token of this store: ${error.message}`, Code.Unauthenticated);
  }
  return new ConnectError(`download_token cannot be verified: ${(error as Error).message}`, Code.Unauthenticated);
}

/** PERMISSION_DENIED unless the download token names the bundle. */
export function requireNamedBundle(bundles: readonly string[], sha256: string): void {
  if (!bundles.includes(sha256)) {
    throw new ConnectError(
      `the download token does not name bundle ${sha256}; ask for a token that includes it`,
      Code.PermissionDenied,
    );
  }
}
