import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Logger } from "pino";
import { ensureDevKeys, loadSigningKeySet, type SigningKeySet } from "../auth/index.js";

/** Why the store has no key to sign download tokens with. */
export class DownloadSigningKeyError extends Error {
  override readonly name = "DownloadSigningKeyError";
}

/**
 * The store's download-token keys: the key set in --signing-key FILE when
 * given (its newest private key signs, all its keys verify: see
 * loadSigningKeySet); else, on a file:// store, the one key
 * `<dir>/download-keys/signing-key.pem`, generated (with its public half,
 * public-keys.jwks.json, for cache nodes' --download-keys) when absent. An
 * s3:// store needs --signing-key: replicas must share the keys.
 */
export async function resolveDownloadKeySet(options: {
  readonly signingKeyPath: string | undefined;
  readonly storageUrl: string;
  readonly logger: Logger;
}): Promise<SigningKeySet> {
  const { signingKeyPath, storageUrl, logger } = options;
  if (signingKeyPath !== undefined) {
    const keySet = await loadSigningKeySet(signingKeyPath);
    logger.info(
      { signingKey: signingKeyPath, kid: keySet.signingKey.kid, verifyKids: keySet.verifyKeys.map((key) => key.kid) },
      "signing download tokens with the newest key of --signing-key, verifying with all of its keys",
    );
    return keySet;
  }
  if (!storageUrl.startsWith("file://")) {
    throw new DownloadSigningKeyError(
      `--storage ${storageUrl} is not a local directory, so there is nowhere to keep a generated key; give --signing-key FILE (an Ed25519 PKCS#8 PEM, e.g. from pgmesh-token keygen, or a key set), the same on every replica`,
    );
  }
  const dir = join(fileURLToPath(storageUrl), "download-keys");
  const files = await ensureDevKeys(dir);
  logger.warn(
    { signingKey: files.privateKeyPath, downloadKeys: files.jwksPath, kid: files.kid },
    "no --signing-key given: signing download tokens with the key in the storage directory (generated if it was absent); give cache nodes its public key file as --download-keys",
  );
  return loadSigningKeySet(files.privateKeyPath);
}
