import { createPublicKey, generateKeyPairSync } from "node:crypto";
import { access, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { JWK } from "jose";
import { loadSigningKey, signingKeyFrom } from "./token-signer.js";

/** The files of one Ed25519 key pair, as `pgmesh-token keygen` writes them. */
export interface KeyFiles {
  /** PKCS#8 PEM private key: mints tokens (`pgmesh-token mint --key`). */
  readonly privateKeyPath: string;
  /** JWKS JSON with the public key: give it to servers as --auth-keys. */
  readonly jwksPath: string;
  /** SPKI PEM public key: also accepted by --auth-keys. */
  readonly publicKeyPath: string;
  readonly kid: string;
}

export function keyFilePaths(dir: string): Omit<KeyFiles, "kid"> {
  return {
    privateKeyPath: join(dir, "signing-key.pem"),
    jwksPath: join(dir, "public-keys.jwks.json"),
    publicKeyPath: join(dir, "public-key.pem"),
  };
}

/** Generates a new Ed25519 key pair into `dir` (created if needed), replacing any there. */
export async function generateKeyFiles(dir: string): Promise<KeyFiles> {
  const paths = keyFilePaths(dir);
  const { privateKey } = generateKeyPairSync("ed25519");
  const { kid } = await signingKeyFrom(privateKey);
  const publicKey = createPublicKey(privateKey);
  const jwk: JWK = { ...(publicKey.export({ format: "jwk" }) as JWK), kid, alg: "EdDSA", use: "sig" };
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFile(paths.privateKeyPath, privateKey.export({ format: "pem", type: "pkcs8" }), { mode: 0o600 });
  await writeFile(paths.jwksPath, JSON.stringify({ keys: [jwk] }, null, 2) + "\n");
  await writeFile(paths.publicKeyPath, publicKey.export({ format: "pem", type: "spki" }));
  return { ...paths, kid };
}

/** Returns the dev key pair in `dir`, generating it first when the private key is absent. */
export async function ensureDevKeys(dir: string): Promise<KeyFiles> {
  const paths = keyFilePaths(dir);
  try {
    await Promise.all([access(paths.privateKeyPath), access(paths.jwksPath), access(paths.publicKeyPath)]);
  } catch {
    return generateKeyFiles(dir);
  }
  const { kid } = await loadSigningKey(paths.privateKeyPath);
  return { ...paths, kid };
}
