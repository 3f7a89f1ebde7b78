import pg from "pg";
import type { JsonReader } from "./json-reader.js";

/*
 * Role and database options of a compute spec, as Neon's GenericOption lists
 * carry them (`{"name": "CREATEDB"}`, `{"name": "CONNECTION LIMIT", "value": "5"}`,
 * `{"name": "LC_COLLATE", "value": "C"}`) or in pgmesh's older spelling
 * (`{"name": "createdb", "value": "true"}`, `connection_limit`). Only known
 * keywords are accepted and every value is validated, then rendered quoted:
 * no text from the spec reaches SQL as it was written.
 */

const { escapeIdentifier: ident, escapeLiteral: literal } = pg;

export const roleFlags = ["login", "createdb", "createrole", "inherit", "replication", "bypassrls"] as const;
export type RoleFlag = (typeof roleFlags)[number];

/** The role options a spec names, in its order; what it does not name is left to Postgres (or as it is). */
export type RoleOptions = Partial<Record<RoleFlag, boolean>> & {
  /** -1: no limit. */
  readonly connectionLimit?: number;
  /** A timestamp Postgres reads, or "infinity". */
  readonly validUntil?: string;
};

/** A CREATE DATABASE option; `connection_limit` also applies to an existing database. */
export interface DatabaseOption {
  readonly keyword: "LC_COLLATE" | "LC_CTYPE" | "LOCALE" | "ICU_LOCALE" | "LOCALE_PROVIDER" | "TEMPLATE" | "ENCODING" | "STRATEGY" | "CONNECTION LIMIT";
  readonly value: string;
}

const databaseKeywords: Record<string, { keyword: DatabaseOption["keyword"]; check: (value: string) => string | undefined }> = {
  lc_collate: { keyword: "LC_COLLATE", check: localeProblem },
  lc_ctype: { keyword: "LC_CTYPE", check: localeProblem },
  locale: { keyword: "LOCALE", check: localeProblem },
  icu_locale: { keyword: "ICU_LOCALE", check: localeProblem },
  locale_provider: { keyword: "LOCALE_PROVIDER", check: oneOf("libc", "icu") },
  template: { keyword: "TEMPLATE", check: (v) => (Buffer.byteLength(v) > 63 || v.includes("\0") ? "must be a database name (at most 63 bytes)" : undefined) },
  encoding: { keyword: "ENCODING", check: (v) => (/^[A-Za-z0-9_-]{1,32}$/.test(v) ? undefined : "must be an encoding name such as UTF8") },
  strategy: { keyword: "STRATEGY", check: oneOf("wal_log", "file_copy") },
  connection_limit: { keyword: "CONNECTION LIMIT", check: connectionLimitProblem },
};

/** `CONNECTION LIMIT`, `connection_limit`, `Connection_Limit` all read as connection_limit. */
function optionKey(reader: JsonReader): string {
  return reader.nonEmptyString().trim().toLowerCase().replace(/[\s_]+/g, "_");
}

/** Text of an option value: strings as they are, numbers and booleans as JSON writes them; undefined when absent. */
function optionValue(reader: JsonReader): string | undefined {
  if (reader.isAbsent) return undefined;
  if (typeof reader.value === "number" || typeof reader.value === "boolean") return String(reader.value);
  return reader.string();
}

export function parseRoleOptions(reader: JsonReader): RoleOptions {
  const options: Record<string, boolean | number | string> = {};
  for (const option of reader.items()) {
    option.object();
    const key = optionKey(option.field("name"));
    const valueReader = option.field("value");
    const value = optionValue(valueReader);
    const negated = key.startsWith("no") ? key.slice(2) : undefined;
    if ((roleFlags as readonly string[]).includes(key)) {
      options[key] = value === undefined ? true : parseBoolean(valueReader, value);
    } else if (negated !== undefined && (roleFlags as readonly string[]).includes(negated)) {
      if (value !== undefined) valueReader.fail(`must be absent for ${key.toUpperCase()}`);
      options[negated] = false;
    } else if (key === "connection_limit") {
      const problem = connectionLimitProblem(value ?? "");
      if (problem || value === undefined) return valueReader.fail(problem ?? "must be given");
      options.connectionLimit = Number(value);
    } else if (key === "valid_until") {
      if (value === undefined || !isTimestamp(value)) return valueReader.fail(`must be "infinity" or a timestamp such as 2030-01-31 or 2030-01-31T12:00:00Z, got ${JSON.stringify(value ?? null)}`);
      options.validUntil = value;
    } else {
      const supported = [...roleFlags.flatMap((f) => [f, `no${f}`]), "connection limit", "valid until"];
      option.field("name").fail(`unsupported role option "${key}"; supported (any case): ${supported.join(", ")}`);
    }
  }
  return options as RoleOptions;
}

export function parseDatabaseOptions(reader: JsonReader): DatabaseOption[] {
  const options: DatabaseOption[] = [];
  for (const option of reader.items()) {
    option.object();
    const key = optionKey(option.field("name"));
    const known = databaseKeywords[key];
    if (!known) {
      option.field("name").fail(`unsupported database option "${key}"; supported (any case): ${Object.keys(databaseKeywords).join(", ")}`);
    }
    const valueReader = option.field("value");
    const value = optionValue(valueReader);
    const problem = value === undefined ? "must be given" : known.check(value);
    if (problem) valueReader.fail(`${problem}, got ${JSON.stringify(value ?? null)}`);
    options.push({ keyword: known.keyword, value: value! });
  }
  return options;
}

/** The SQL clauses of role options, in the spec's order (`CREATEDB NOLOGIN CONNECTION LIMIT 5`). */
export function renderRoleOptions(options: RoleOptions, only?: ReadonlySet<string>): string[] {
  const clauses: string[] = [];
  for (const [key, value] of Object.entries(options)) {
    if (only && !only.has(key)) continue;
    if (key === "connectionLimit") clauses.push(`CONNECTION LIMIT ${Number(value)}`);
    else if (key === "validUntil") clauses.push(`VALID UNTIL ${literal(String(value))}`);
    else clauses.push(`${value ? "" : "NO"}${key.toUpperCase()}`);
  }
  return clauses;
}

/** One CREATE DATABASE clause (`LC_COLLATE 'C'`, `TEMPLATE template0`). */
export function renderDatabaseOption({ keyword, value }: DatabaseOption): string {
  switch (keyword) {
    case "TEMPLATE":
      return `TEMPLATE ${value === "template0" || value === "template1" ? value : ident(value)}`;
    case "CONNECTION LIMIT":
    case "LOCALE_PROVIDER":
    case "STRATEGY":
      return `${keyword} ${value}`;
    default:
      return `${keyword} ${literal(value)}`;
  }
}

function localeProblem(value: string): string | undefined {
  return /^[A-Za-z0-9_.@=-]{1,100}$/.test(value) ? undefined : "must be a locale name such as C, POSIX or en_US.UTF-8";
}

function connectionLimitProblem(value: string): string | undefined {
  return /^(-1|\d{1,9})$/.test(value.trim()) ? undefined : "must be an integer >= -1";
}

function oneOf(...allowed: string[]): (value: string) => string | undefined {
  return (value) => (allowed.includes(value.toLowerCase()) ? undefined : `must be one of ${allowed.join(", ")}`);
}

function parseBoolean(reader: JsonReader, text: string): boolean {
  const lower = text.toLowerCase();
  if (["true", "on", "yes", "1"].includes(lower)) return true;
  if (["false", "off", "no", "0"].includes(lower)) return false;
  return reader.fail(`must be true or false, got "${text}"`);
}

function isTimestamp(value: string): boolean {
  if (value === "infinity" || value === "-infinity") return true;
  return /^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?(Z|[+-]\d{2}(:?\d{2})?)?$/.test(value) && !Number.isNaN(Date.parse(value.replace(" ", "T")));
}
