import { Code, ConnectError } from "@connectrpc/connect";
import { quoteInput } from "../errors/index.js";

const extensionName = /^[a-z0-9][a-z0-9_-]{0,62}$/;
const sha256Hex = /^[0-9a-f]{64}$/;
const tenantId = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/** An extension name as in CREATE EXTENSION: lowercase letters, digits, _ and -, at most 63 characters. */
export function checkExtensionName(name: string, field = "name"): string {
  if (!extensionName.test(name)) {
    throw new ConnectError(
      `${field} ${quoteInput(name)} is not a valid extension name; use 1-63 lowercase letters, digits, "_" and "-", starting with a letter or digit`,
      Code.InvalidArgument,
    );
  }
  return name;
}

/** A bundle identity: 64 lowercase hex digits. */
export function checkSha256(sha256: string, field = "sha256"): string {
  if (!sha256Hex.test(sha256)) {
    throw new ConnectError(
      `${field} ${quoteInput(sha256)} is not a sha256; give 64 lowercase hex digits`,
      Code.InvalidArgument,
    );
  }
  return sha256;
}

/** A tenant id that can name a blob key segment. */
export function checkTenantId(id: string, field = "tenant_id"): string {
  if (!tenantId.test(id)) {
    throw new ConnectError(
      `${field} ${quoteInput(id)} is not a valid tenant id; use 1-128 letters, digits, "_", "." and "-", starting with a letter or digit`,
      Code.InvalidArgument,
    );
  }
  return id;
}

/** A Postgres major version this store can catalog. */
export function checkPgMajor(major: number, field = "pg_major"): number {
  if (!Number.isInteger(major) || major < 10 || major > 99) {
    throw new ConnectError(`${field} ${major} is not a Postgres major version (10-99)`, Code.InvalidArgument);
  }
  return major;
}
