import { createPrivateKey, createPublicKey, type KeyObject } from "node:crypto";
import { calculateJwkThumbprint, importJWK, type JWK } from "jose";
import { KeyFileError } from "./auth-error.js";
import { readKeyFile } from "./read-key-file.js";
import type { SigningKey } from "./token-signer.js";
import { parseJwks, type VerifyKey } from "./verify-key-set.js";

/**
 * Keys that sign and verify one kind of token across replicas and rotations:
 * the newest private key signs, every key of the set verifies.
 */
export interface SigningKeySet {
  readonly signingKey: SigningKey;
  /** Every key of the set, the signing key's public half included. */
  readonly verifyKeys: readonly VerifyKey[];
}

const pemBlock = /-----BEGIN (PRIVATE|PUBLIC) KEY-----[\s\S]+?-----END \1 KEY-----/g;

/**
 * Reads a key set file: a JWKS JSON document or concatenated PEM keys, all
 * Ed25519. Private keys (JWKs with "d", PKCS#8 PEM) sign and verify, public
 * ones only verify; the last private key in the file is the newest and signs.
 * A kid is the JWK's own or else the RFC 7638 thumbprint of the public key.
 */
export async function loadSigningKeySet(path: string): Promise<SigningKeySet> {
  const text = (await readKeyFile(path)).trim();
  const jwks = text.startsWith("{") ? parseJwks(text, path) : pemJwks(text, path);
  let signingKey: SigningKey | undefined;
  const verifyKeys: VerifyKey[] = [];
  for (const jwk of jwks) {
    if (jwk.kty !== "OKP" || jwk.crv !== "Ed25519" || typeof jwk.x !== "string") {
      throw new KeyFileError(path, `key ${jwk.kid ?? "(no kid)"} is ${jwk.kty}/${jwk.crv ?? "?"}; only Ed25519 (OKP) keys sign tokens`);
    }
    const publicJwk: JWK = { kty: "OKP", crv: "Ed25519", x: jwk.x };
    const kid = jwk.kid ?? (await calculateJwkThumbprint(publicJwk));
    if (verifyKeys.some((key) => key.kid === kid)) {
      throw new KeyFileError(path, `holds key "${kid}" twice; give each key once (its private form if it signs)`);
    }
    verifyKeys.push({ kid, kidGiven: jwk.kid !== undefined, key: await importJWK({ ...publicJwk, alg: "EdDSA" }, "EdDSA") });
    if (jwk.d !== undefined) signingKey = { kid, key: privateKeyOf(jwk, path) };
  }
  if (signingKey === undefined) {
    throw new KeyFileError(path, "holds no private key to sign with; the last private key of the file signs, public keys only verify");
  }
  return { signingKey, verifyKeys };
}

function privateKeyOf(jwk: JWK, path: string): KeyObject {
  try {
    return createPrivateKey({ key: { kty: "OKP", crv: "Ed25519", x: jwk.x!, d: jwk.d! }, format: "jwk" });
  } catch (err) {
    throw new KeyFileError(path, `private key ${jwk.kid ?? "(no kid)"} cannot be read: ${(err as Error).message}`);
  }
}

function pemJwks(text: string, path: string): JWK[] {
  const blocks = text.match(pemBlock) ?? [];
  if (blocks.length === 0) throw new KeyFileError(path, "holds no keys; expected a JWKS JSON document or PEM keys");
  return blocks.map((pem, i) => {
    try {
      const key = pem.includes("PRIVATE KEY") ? createPrivateKey(pem) : createPublicKey(pem);
      return key.export({ format: "jwk" }) as JWK;
    } catch (err) {
      throw new KeyFileError(path, `PEM key #${i + 1} cannot be parsed: ${(err as Error).message}`);
    }
  });
}
