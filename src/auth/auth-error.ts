/** Why a bearer token was refused; each maps to UNAUTHENTICATED on the wire. */
export type AuthFailure =
  | "missing"
  | "malformed"
  | "too_large"
  | "expired"
  | "bad_signature"
  | "unknown_key"
  | "bad_claims";

/** A bearer token that cannot be accepted, with the reason a person can act on. */
export class AuthError extends Error {
  override readonly name = "AuthError";

  constructor(
    readonly failure: AuthFailure,
    message: string,
  ) {
    super(message);
  }
}

/** A key file that cannot be read or parsed. */
export class KeyFileError extends Error {
  override readonly name = "KeyFileError";

  constructor(
    readonly path: string,
    message: string,
  ) {
    super(`auth keys "${path}": ${message}`);
  }
}
