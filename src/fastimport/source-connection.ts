import { InvalidSourceError } from "./fast-import-errors.js";

/**
 * The source server, parsed from a libpq URI. The password is held apart: it
 * reaches child programs only as PGPASSWORD and never appears in a URI this
 * object hands out, so argv and logs stay free of it.
 */
export interface SourceConnection {
  /** The database the URI names (path or ?dbname=), if any. */
  readonly database: string | undefined;
  readonly user: string | undefined;
  readonly password: string | undefined;
  /** The URI for `database`, without the password: safe for argv. */
  uriFor(database: string): string;
  /** The URI with the password, for in-process clients only (never argv, never logs). */
  clientUri(database: string): string;
  /** For messages and logs: the password, if any, shown as "***". */
  redacted(database?: string): string;
  /** Environment for child programs (PGPASSWORD when there is a password). */
  childEnv(): Record<string, string>;
}

const schemes = new Set(["postgresql:", "postgres:"]);
/** Query parameters that carry secrets or that this object sets itself. */
const droppedParams = new Set(["password", "dbname"]);

/**
 * Parses `raw` (postgresql://user:password@host:port/dbname?params). A
 * password from the URI wins over `fallbackPassword` (PGPASSWORD). Throws
 * InvalidSourceError with a redacted rendering of what was given.
 */
export function parseSourceConnection(raw: string, fallbackPassword?: string): SourceConnection {
  const shown = redactLoosely(raw);
  if (raw.trim() === "") throw new InvalidSourceError('""', "it is empty");
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new InvalidSourceError(shown, "it does not parse as a URI (a port must be a number up to 65535; multi-host URIs are not supported)");
  }
  if (!schemes.has(url.protocol)) {
    throw new InvalidSourceError(shown, `the scheme "${url.protocol}" is not postgresql:`);
  }
  if (url.hash !== "") throw new InvalidSourceError(shown, 'it has a "#" fragment');
  const user = decodePart(url.username, shown) || url.searchParams.get("user") || undefined;
  const password = decodePart(url.password, shown) || url.searchParams.get("password") || fallbackPassword || undefined;
  const pathDb = decodePart(url.pathname.replace(/^\//, ""), shown);
  if (pathDb.includes("/")) throw new InvalidSourceError(shown, "the path names more than one segment; it is the database name");
  const database = pathDb || url.searchParams.get("dbname") || undefined;

  const build = (db: string | undefined, passwordText: string | undefined): string => {
    const out = new URL(`${url.protocol}//${url.host}`);
    if (url.username !== "") out.username = url.username;
    if (passwordText !== undefined) out.password = passwordText;
    out.pathname = db === undefined ? "" : `/${encodeURIComponent(db)}`;
    for (const [name, value] of url.searchParams) {
      if (!droppedParams.has(name)) out.searchParams.append(name, value);
    }
    return out.toString();
  };
  return {
    database,
    user,
    password,
    uriFor: (db) => build(db, undefined),
    clientUri: (db) => build(db, password),
    redacted: (db) => build(db ?? database, password === undefined ? undefined : "***"),
    childEnv: (): Record<string, string> => (password === undefined ? {} : { PGPASSWORD: password }),
  };
}

function decodePart(part: string, shown: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw new InvalidSourceError(shown, "it holds a malformed %-escape");
  }
}

/** Best-effort redaction of a string that may not even parse. */
export function redactLoosely(raw: string): string {
  return JSON.stringify(
    raw
      .replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/?#@]*):[^@/?#]*@/i, "$1:***@")
      .replace(/([?&]password=)[^&]*/i, "$1***"),
  );
}
