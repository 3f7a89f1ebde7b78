import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  createTokenVerifier,
  generateKeyFiles,
  loadSigningKey,
  loadVerifyKeySet,
  signToken,
  type KeyFiles,
  type SigningKey,
  type TokenClaims,
  type TokenVerifier,
} from "../../src/auth/index.js";

/** A fresh Ed25519 key pair in a temp dir, with a verifier and a token minter. */
export interface TestKeys extends KeyFiles {
  readonly dir: string;
  readonly signingKey: SigningKey;
  readonly verifier: TokenVerifier;
  /** Mints a token (default ttl 1 h). */
  mint(claims: TokenClaims, options?: { readonly ttlSec?: number; readonly now?: () => number }): Promise<string>;
  /** A compute token for one endpoint. */
  computeToken(tenantId: string, timelineId: string, endpointId: string): Promise<string>;
  /** Removes the temp dir. */
  remove(): Promise<void>;
}

export async function createTestKeys(): Promise<TestKeys> {
  const dir = await mkdtemp(join(tmpdir(), "pgmesh-keys-"));
  const files = await generateKeyFiles(dir);
  const signingKey = await loadSigningKey(files.privateKeyPath);
  const verifier = createTokenVerifier(await loadVerifyKeySet(files.jwksPath));
  const mint: TestKeys["mint"] = (claims, options = {}) =>
    signToken(signingKey, claims, { ttlSec: options.ttlSec ?? 3600, ...(options.now ? { now: options.now } : {}) });
  return {
    ...files,
    dir,
    signingKey,
    verifier,
    mint,
    computeToken: (tenantId, timelineId, endpointId) => mint({ scope: "compute", tenantId, timelineId, endpointId }),
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}
