import { createPrivateKey, createPublicKey, type KeyObject } from "node:crypto";
import { calculateJwkThumbprint, SignJWT, type JWK } from "jose";
import { KeyFileError } from "./auth-error.js";
import type { Scope } from "./claims.js";
import { readKeyFile } from "./read-key-file.js";

/** A private Ed25519 key that mints tokens; `kid` is the RFC 7638 thumbprint of its public key. */
export interface SigningKey {
  readonly kid: string;
  readonly key: KeyObject;
}

/** What a minted token says; `exp` comes from the ttl. */
export interface TokenClaims {
  readonly scope: Scope;
  readonly tenantId?: string;
  readonly timelineId?: string;
  readonly endpointId?: string;
  readonly subject?: string;
}

export interface SignTokenOptions {
  /** Lifetime in seconds from `now` (may be negative, for tests of expiry). */
  readonly ttlSec: number;
  /** The clock (default Date.now). */
  readonly now?: () => number;
  /** Leave the kid out of the header (default false). */
  readonly omitKid?: boolean;
}

/** Reads a PKCS#8 PEM Ed25519 private key, as written by `pgmesh-token keygen`. */
export async function loadSigningKey(path: string): Promise<SigningKey> {
  const pem = await readKeyFile(path);
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (err) {
    throw new KeyFileError(path, `is not a PEM private key: ${(err as Error).message}`);
  }
  return signingKeyFrom(key, path);
}

/** Wraps a private KeyObject; `source` names it in errors. */
export async function signingKeyFrom(key: KeyObject, source = "signing key"): Promise<SigningKey> {
  if (key.type !== "private" || key.asymmetricKeyType !== "ed25519") {
    throw new KeyFileError(source, `is a ${key.type} ${key.asymmetricKeyType ?? "?"} key; expected an Ed25519 private key`);
  }
  const jwk = createPublicKey(key).export({ format: "jwk" }) as JWK;
  return { kid: await calculateJwkThumbprint(jwk), key };
}

/** Mints an EdDSA JWT with pgmesh's wire claims (scope, tenant_id, timeline_id, endpoint_id, sub, iat, exp). */
export async function signToken(signingKey: SigningKey, claims: TokenClaims, options: SignTokenOptions): Promise<string> {
  const nowSec = Math.floor((options.now ?? Date.now)() / 1000);
  const payload: Record<string, string> = { scope: claims.scope };
  if (claims.tenantId !== undefined) payload["tenant_id"] = claims.tenantId;
  if (claims.timelineId !== undefined) payload["timeline_id"] = claims.timelineId;
  if (claims.endpointId !== undefined) payload["endpoint_id"] = claims.endpointId;
  const jwt = new SignJWT(payload)
    .setProtectedHeader(options.omitKid ? { alg: "EdDSA", typ: "JWT" } : { alg: "EdDSA", typ: "JWT", kid: signingKey.kid })
    .setIssuedAt(nowSec)
    .setExpirationTime(nowSec + Math.round(options.ttlSec));
  if (claims.subject !== undefined) jwt.setSubject(claims.subject);
  return jwt.sign(signingKey.key);
}
