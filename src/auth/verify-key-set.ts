import { createPublicKey } from "node:crypto";
import { calculateJwkThumbprint, importJWK, type JWK } from "jose";
import { KeyFileError } from "./auth-error.js";
import { readKeyFile } from "./read-key-file.js";

/** One public key that verifies tokens; `kid` is the JWKS kid or, for PEM keys, the RFC 7638 thumbprint. */
export interface VerifyKey {
  readonly kid: string;
  /** False when the kid was computed (PEM keys, JWKS keys without kid): tokens may name the key otherwise. */
  readonly kidGiven: boolean;
  readonly key: Awaited<ReturnType<typeof importJWK>>;
}

/** The public keys a server accepts, by kid. */
export interface VerifyKeySet {
  readonly keys: readonly VerifyKey[];
}

const pemBlock = /-----BEGIN PUBLIC KEY-----[\s\S]+?-----END PUBLIC KEY-----/g;

/** Reads --auth-keys: a JWKS JSON document or one or more concatenated SPKI PEM public keys (Ed25519). */
export async function loadVerifyKeySet(path: string): Promise<VerifyKeySet> {
  return parseVerifyKeySet(await readKeyFile(path), path);
}

/** Parses the text of a key file; `source` names it in errors. */
export async function parseVerifyKeySet(text: string, source: string): Promise<VerifyKeySet> {
  const trimmed = text.trim();
  const jwks = trimmed.startsWith("{") ? parseJwks(trimmed, source) : parsePem(trimmed, source);
  if (jwks.length === 0) {
    throw new KeyFileError(source, "holds no public keys; expected a JWKS JSON document or PEM public keys");
  }
  const keys: VerifyKey[] = [];
  for (const jwk of jwks) {
    if (jwk.kty !== "OKP" || jwk.crv !== "Ed25519") {
      throw new KeyFileError(
        source,
        `key ${jwk.kid ?? "(no kid)"} is ${jwk.kty}/${jwk.crv ?? "?"}; pgmesh verifies Ed25519 (OKP) keys only`,
      );
    }
    if (jwk.d !== undefined) {
      throw new KeyFileError(source, `key ${jwk.kid ?? "(no kid)"} is a private key; give the public key only`);
    }
    const kid = jwk.kid ?? (await calculateJwkThumbprint(jwk));
    keys.push({ kid, kidGiven: jwk.kid !== undefined, key: await importJWK({ ...jwk, alg: "EdDSA" }, "EdDSA") });
  }
  return { keys };
}

/** The keys of a JWKS JSON document (`{"keys": [...]}`), unchecked; `source` names it in errors. */
export function parseJwks(text: string, source: string): JWK[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new KeyFileError(source, `is not valid JSON: ${(err as Error).message}`);
  }
  const keys = (doc as { keys?: unknown }).keys;
  if (!Array.isArray(keys)) {
    throw new KeyFileError(source, 'is JSON but not a JWKS: expected {"keys": [...]}');
  }
  return keys as JWK[];
}

function parsePem(text: string, source: string): JWK[] {
  const blocks = text.match(pemBlock) ?? [];
  return blocks.map((pem, i) => {
    try {
      return createPublicKey(pem).export({ format: "jwk" }) as JWK;
    } catch (err) {
      throw new KeyFileError(source, `PEM key #${i + 1} cannot be parsed: ${(err as Error).message}`);
    }
  });
}
