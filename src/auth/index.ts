export { AuthError, KeyFileError, type AuthFailure } from "./auth-error.js";
export {
  requireClaims,
  requireEndpointAccess,
  requireResourceAccess,
  requireScope,
  requireTenantAccess,
  type ResourceRef,
} from "./authorize.js";
export { scopes, type Claims, type Scope } from "./claims.js";
export { authModeKey, claimsKey, type AuthMode } from "./claims-context.js";
export { ensureDevKeys, generateKeyFiles, keyFilePaths, type KeyFiles } from "./dev-keys.js";
export {
  loadSigningKey,
  signingKeyFrom,
  signToken,
  type SignTokenOptions,
  type SigningKey,
  type TokenClaims,
} from "./token-signer.js";
export {
  checkBearerTokenSize,
  createTokenVerifier,
  maxBearerTokenBytes,
  type TokenVerifier,
  type TokenVerifierOptions,
} from "./token-verifier.js";
export { loadSigningKeySet, type SigningKeySet } from "./signing-key-set.js";
export { loadVerifyKeySet, parseVerifyKeySet, type VerifyKey, type VerifyKeySet } from "./verify-key-set.js";
export { runTokenCommand } from "./token-command.js";
