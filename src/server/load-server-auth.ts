import type { Logger } from "pino";
import { createTokenVerifier, loadVerifyKeySet } from "../auth/index.js";
import type { ServerConfig } from "../config/index.js";
import type { ServerAuth } from "./server-options.js";

/** Builds the server's auth from the shared flags: load --auth-keys, or warn loudly about --insecure-no-auth. */
export async function loadServerAuth(
  config: Pick<ServerConfig, "authKeysPath" | "insecureNoAuth">,
  logger: Logger,
): Promise<ServerAuth> {
  if (config.insecureNoAuth) {
    logger.warn("--insecure-no-auth: AUTHENTICATION IS OFF, every caller may do everything; never run like this outside development");
    return { insecure: true };
  }
  if (config.authKeysPath === undefined) {
    throw new TypeError("no --auth-keys given and --insecure-no-auth not chosen; the server cannot verify tokens");
  }
  const keySet = await loadVerifyKeySet(config.authKeysPath);
  logger.info({ authKeys: config.authKeysPath, kids: keySet.keys.map((k) => k.kid) }, "verifying bearer tokens");
  return { verifier: createTokenVerifier(keySet) };
}
