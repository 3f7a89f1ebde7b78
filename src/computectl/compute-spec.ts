import { resourceIdProblem } from "../ids/index.js";
import type { BranchPoint } from "../timeline/index.js";
import { parseLsn } from "../wal/index.js";
import { parseDatabaseOptions, parseRoleOptions, type DatabaseOption, type RoleOptions } from "./catalog-options.js";
import { JsonReader } from "./json-reader.js";
import { dropNeonOnlySettings } from "./neon-only-settings.js";
import { SpecError } from "./spec-error.js";

/*
 * The compute spec: the parts of Neon's ComputeSpec that apply to pgmesh plus a
 * `pgmesh` object (its JSON shape is in the README, section "compute-ctl"). Unknown
 * fields are ignored; a bad value is a SpecError (INVALID_ARGUMENT) naming its
 * JSON path.
 */

export interface RoleSpec {
  readonly name: string;
  /**
   * What Postgres stores: the spec's SCRAM-SHA-256 verifier as it is, or
   * "md5" + the spec's md5 hash (Neon sends it without the prefix); null: no password.
   */
  readonly encryptedPassword: string | null;
  /** The options the spec names; a new role also gets LOGIN unless they say NOLOGIN. */
  readonly options: RoleOptions;
}

export interface DatabaseSpec {
  readonly name: string;
  readonly owner: string;
  /** -1: no limit. */
  readonly connectionLimit: number;
  /** Options that apply when the database is created (LC_COLLATE, TEMPLATE …), in the spec's order. */
  readonly createOptions: readonly DatabaseOption[];
}

export interface SettingSpec {
  readonly name: string;
  readonly value: string;
}

export type DeltaOperation =
  | { readonly action: "delete_role" | "delete_db"; readonly name: string }
  | { readonly action: "rename_role" | "rename_db"; readonly name: string; readonly newName: string };

/** One extension of Neon's RemoteExtSpec.extension_data. */
export interface RemoteExtensionData {
  /** Control file name -> content. */
  readonly controlData: Readonly<Record<string, string>>;
  readonly archivePath: string;
  /** The bundle's sha256 (from `sha256`, or derived from archive_path). */
  readonly sha256: string;
  readonly needsSharedPreload: boolean;
  readonly needsSessionPreload: boolean;
}

/** Neon's RemoteExtSpec: which extensions the compute may use, and where their bundles are. */
export interface RemoteExtensions {
  readonly publicExtensions: readonly string[];
  readonly customExtensions: readonly string[];
  /** Library name (without .so) -> extension name. */
  readonly libraryIndex: Readonly<Record<string, string>>;
  readonly extensionData: Readonly<Record<string, RemoteExtensionData>>;
}

export type BaseDataSource =
  | { readonly source: "initdb" }
  | { readonly source: "snapshot"; readonly storage: string; readonly prefix: string }
  /**
   * The timeline tenant_id/timeline_id in a blob store: the compute's data is
   * durable there. With an ancestor, a timeline that does not exist yet is
   * created at its first start as a branch of the ancestor at the point.
   */
  | { readonly source: "timeline"; readonly storage: string; readonly ancestor?: TimelineAncestorSpec };

/** Where a new timeline branches off: another timeline of the tenant at an LSN or a time. */
export interface TimelineAncestorSpec {
  readonly timelineId: string;
  readonly point: BranchPoint;
}

/**
 * Neon's ComputeMode: a primary writes the timeline; a static compute is a
 * read-only hot standby at an LSN; a replica is a hot standby that follows the
 * primary's durable WAL in the store.
 */
export type ComputeMode =
  | { readonly kind: "primary" }
  | { readonly kind: "static"; readonly lsn: bigint }
  | { readonly kind: "replica" };

export interface ServiceAddress {
  /** host:port, or a comma-separated list host:port,host:port,… of replicas that calls fail over between. */
  readonly addr: string;
  readonly token: string;
}

/** The base URLs of a service address's replicas, for createClientTransport. */
export function baseUrlsOf(addr: string): string[] {
  return addr.split(",").map((hostPort) => `http://${hostPort}`);
}

export interface ComputeSpec {
  readonly formatVersion: number;
  /** What was dropped from the spec so that vanilla Postgres can run it (Neon-only settings), one line each. */
  readonly warnings: readonly string[];
  readonly clusterId?: string;
  readonly clusterName?: string;
  readonly roles: readonly RoleSpec[];
  readonly databases: readonly DatabaseSpec[];
  readonly settings: readonly SettingSpec[];
  /** Raw postgresql.conf text, written first. */
  readonly postgresqlConf?: string;
  readonly deltaOperations: readonly DeltaOperation[];
  readonly skipPgCatalogUpdates: boolean;
  /** From tenant_id, else the neon.tenant_id setting (as Neon reads it). */
  readonly tenantId?: string;
  /** From timeline_id, else the neon.timeline_id setting. */
  readonly timelineId?: string;
  readonly endpointId?: string;
  readonly remoteExtensions?: RemoteExtensions;
  /** Epufs: address and a compute token for this endpoint. */
  readonly endpointStorage?: ServiceAddress;
  readonly baseData: BaseDataSource;
  /** ExtensionStore: address and a download token. */
  readonly extensionStore?: ServiceAddress;
  /** Postgres port; undefined: compute-ctl's --pg-port. */
  readonly port?: number;
  readonly mode: ComputeMode;
}

/** compute-ctl's own superuser; the spec may not manage it. */
export const adminRole = "cloud_admin";

const reservedRoleNames = new Set([adminRole, "public", "none", "current_user", "session_user", "current_role"]);
const templateDatabases = new Set(["template0", "template1"]);


/** Parses spec JSON text; throws SpecError naming the bad field. */
export function parseComputeSpecJson(text: string): ComputeSpec {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new SpecError("", `not valid JSON (${(err as Error).message})`);
  }
  return parseComputeSpec(value);
}

/** Validates parsed spec JSON into a ComputeSpec; throws SpecError naming the bad field. */
export function parseComputeSpec(value: unknown): ComputeSpec {
  const root = new JsonReader(value, "");
  root.object();
  // Neon reads format_version as a number and checks nothing else about it.
  const formatVersion = root.field("format_version").number();
  const cluster = root.field("cluster");
  cluster.object();
  const roles = cluster.field("roles").items().map(parseRole);
  unique(cluster.field("roles"), roles.map((r) => r.name), "role");
  const databases = cluster.field("databases").items().map(parseDatabase);
  unique(cluster.field("databases"), databases.map((d) => d.name), "database");
  const roleNames = new Set(roles.map((r) => r.name));
  cluster.field("databases").items().forEach((reader, i) => {
    const owner = databases[i]!.owner;
    if (owner !== adminRole && !roleNames.has(owner)) {
      reader.field("owner").fail(`role "${owner}" is not in cluster.roles (nor ${adminRole})`);
    }
  });
  const settingsReader = cluster.field("settings");
  const allSettings = settingsReader.items().map(parseSetting);
  const { kept: settings, warnings } = dropNeonOnlySettings(allSettings);
  const fromSettings = (name: string) => allSettings.find((s) => s.name === name)?.value;
  const spec: ComputeSpec = {
    formatVersion,
    warnings,
    clusterId: cluster.field("cluster_id").optionalString(),
    clusterName: cluster.field("name").optionalString(),
    roles,
    databases,
    settings,
    postgresqlConf: cluster.field("postgresql_conf").optionalString(),
    deltaOperations: root.field("delta_operations").items().flatMap((op) => parseDeltaOperation(op) ?? []),
    skipPgCatalogUpdates: root.field("skip_pg_catalog_updates").boolean(false),
    tenantId: root.field("tenant_id").optionalNonEmptyString() ?? nonEmpty(fromSettings("neon.tenant_id")),
    timelineId: root.field("timeline_id").optionalNonEmptyString() ?? nonEmpty(fromSettings("neon.timeline_id")),
    endpointId: root.field("endpoint_id").optionalNonEmptyString(),
    remoteExtensions: root.field("remote_extensions").isAbsent ? undefined : parseRemoteExtensions(root.field("remote_extensions"), warnings),
    endpointStorage: parseEndpointStorage(root, fromSettings),
    ...parsePgmesh(root.field("pgmesh")),
    mode: parseMode(root.field("mode")),
  };
  for (const [id, value] of [["tenant_id", spec.tenantId], ["timeline_id", spec.timelineId], ["endpoint_id", spec.endpointId]] as const) {
    const problem = value === undefined ? undefined : resourceIdProblem(value);
    if (problem) root.field(id).fail(`${JSON.stringify(value)} ${problem}`);
  }
  if (spec.mode.kind !== "primary" && spec.baseData.source !== "timeline") {
    root.field("mode").fail('Static and Replica computes read a durable timeline: set pgmesh.base_data.source to "timeline"');
  }
  if (spec.baseData.source === "timeline") {
    for (const [id, value] of [["tenant_id", spec.tenantId], ["timeline_id", spec.timelineId]] as const) {
      if (value === undefined) root.field(id).fail('is required when pgmesh.base_data.source is "timeline" (it names the durable timeline)');
    }
  }
  if (spec.endpointStorage) {
    for (const [id, value] of [["tenant_id", spec.tenantId], ["timeline_id", spec.timelineId], ["endpoint_id", spec.endpointId]] as const) {
      if (value === undefined) root.field(id).fail("is required when endpoint_storage_addr is set (Epufs files are kept per endpoint)");
    }
  }
  return spec;
}

function parseRole(reader: JsonReader): RoleSpec {
  reader.object();
  const name = identifier(reader.field("name"));
  if (name.startsWith("pg_")) reader.field("name").fail(`role names starting with "pg_" are reserved by Postgres`);
  if (reservedRoleNames.has(name.toLowerCase())) reader.field("name").fail(`"${name}" is reserved`);
  return { name, encryptedPassword: storedPassword(reader.field("encrypted_password")), options: parseRoleOptions(reader.field("options")) };
}

/**
 * As Neon reads encrypted_password: a SCRAM-SHA-256 verifier is stored as it
 * is; anything else is an md5 hash without its "md5" prefix (32 hex digits),
 * stored as "md5" + hash.
 */
function storedPassword(reader: JsonReader): string | null {
  if (reader.isAbsent) return null;
  const password = reader.string();
  if (password.startsWith("SCRAM-SHA-256")) {
    if (!/^SCRAM-SHA-256\$\d+:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+$/.test(password)) {
      reader.fail("is not a well-formed SCRAM-SHA-256 verifier (SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>)");
    }
    return password;
  }
  if (!/^[0-9a-fA-F]{32}$/.test(password)) {
    reader.fail("must be a SCRAM-SHA-256 verifier (SCRAM-SHA-256$...) or an md5 hash as Neon sends it (32 hex digits, without the \"md5\" prefix); plain passwords are not accepted");
  }
  return `md5${password.toLowerCase()}`;
}

function parseDatabase(reader: JsonReader): DatabaseSpec {
  reader.object();
  const name = identifier(reader.field("name"));
  if (templateDatabases.has(name)) reader.field("name").fail(`"${name}" is a template database and cannot be managed`);
  const owner = identifier(reader.field("owner"));
  const options = parseDatabaseOptions(reader.field("options"));
  const limit = options.findLast((o) => o.keyword === "CONNECTION LIMIT");
  return {
    name,
    owner,
    connectionLimit: limit ? Number(limit.value) : -1,
    createOptions: options.filter((o) => o.keyword !== "CONNECTION LIMIT"),
  };
}

function parseSetting(reader: JsonReader): SettingSpec {
  reader.object();
  const name = reader.field("name").nonEmptyString();
  if (!/^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$/.test(name)) {
    reader.field("name").fail(`"${name}" is not a Postgres setting name`);
  }
  const value = reader.field("value");
  if (typeof value.value === "number" || typeof value.value === "boolean") return { name, value: String(value.value) };
  const text = value.string();
  if (/[\n\r\0]/.test(text)) value.fail("must not contain line breaks or NUL");
  return { name, value: text };
}

/** One delta operation; an action pgmesh does not know is skipped (undefined), as Neon skips it. */
function parseDeltaOperation(reader: JsonReader): DeltaOperation | undefined {
  reader.object();
  const action = reader.field("action").nonEmptyString();
  switch (action) {
    case "delete_role":
    case "delete_db": {
      const name = identifier(reader.field("name"));
      if (action === "delete_db" && (templateDatabases.has(name) || name === "postgres")) {
        reader.field("name").fail(`database "${name}" cannot be dropped`);
      }
      return { action, name };
    }
    case "rename_role":
    case "rename_db":
      return { action, name: identifier(reader.field("name")), newName: identifier(reader.field("new_name")) };
    default:
      return undefined;
  }
}

function parseRemoteExtensions(reader: JsonReader, warnings: string[]): RemoteExtensions {
  reader.object();
  const withoutSha256 = new Set<string>();
  const names = (field: string) => reader.field(field).items().map((r) => r.nonEmptyString()).filter((name) => !withoutSha256.has(name));
  const extensionData: Record<string, RemoteExtensionData> = {};
  for (const [name, data] of reader.field("extension_data").entries()) {
    data.object();
    const controlData: Record<string, string> = {};
    for (const [file, content] of data.field("control_data").entries()) {
      if (!/^[A-Za-z0-9_.-]+\.control$/.test(file) && !/^[A-Za-z0-9_.-]+--[A-Za-z0-9_.-]+\.control$/.test(file)) {
        content.fail(`"${file}" is not a control file name`);
      }
      controlData[file] = content.string();
    }
    const archivePath = data.field("archive_path").nonEmptyString();
    const sha256 = data.field("sha256").optionalString() ?? /sha256-([0-9a-f]{64})/.exec(archivePath)?.[1];
    if (sha256 !== undefined && !/^[0-9a-f]{64}$/.test(sha256)) data.field("sha256").fail("must be 64 lowercase hex digits");
    if (sha256 === undefined) {
      // Neon's archive paths name no sha256; pgmesh's ExtensionStore serves bundles only by theirs.
      warnings.push(`left out extension "${name}": its archive_path ${archivePath} names no sha256 and the spec gives none, so its bundle cannot be fetched from the ExtensionStore`);
      withoutSha256.add(name);
      continue;
    }
    extensionData[name] = {
      controlData,
      archivePath,
      sha256,
      needsSharedPreload: data.field("needs_shared_preload").boolean(false),
      needsSessionPreload: data.field("needs_session_preload").boolean(false),
    };
  }
  const libraryIndex: Record<string, string> = {};
  for (const [library, extension] of reader.field("library_index").entries()) libraryIndex[library] = extension.nonEmptyString();
  return {
    publicExtensions: names("public_extensions"),
    customExtensions: names("custom_extensions"),
    libraryIndex,
    extensionData,
  };
}

/** endpoint_storage_addr / _token, else the neon.endpoint_storage_addr / _token settings (as Neon reads them). */
function parseEndpointStorage(root: JsonReader, fromSettings: (name: string) => string | undefined): ServiceAddress | undefined {
  const addrReader = root.field("endpoint_storage_addr");
  const settingAddr = fromSettings("neon.endpoint_storage_addr");
  const addr = addrReader.isAbsent && settingAddr !== undefined ? new JsonReader(settingAddr, "cluster.settings[neon.endpoint_storage_addr]") : addrReader;
  if (addr.isAbsent) return undefined;
  return { addr: hostPort(addr), token: root.field("endpoint_storage_token").optionalString() ?? fromSettings("neon.endpoint_storage_token") ?? "" };
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === "" ? undefined : value;
}

function parsePgmesh(reader: JsonReader): Pick<ComputeSpec, "baseData" | "extensionStore" | "port"> {
  if (reader.isAbsent) return { baseData: { source: "initdb" } };
  reader.object();
  const base = reader.field("base_data");
  let baseData: BaseDataSource = { source: "initdb" };
  if (!base.isAbsent) {
    base.object();
    const source = base.field("source").nonEmptyString();
    if (source === "snapshot") {
      baseData = { source, storage: storageUrl(base.field("storage")), prefix: base.field("prefix").string().replace(/\/+$/, "") };
    } else if (source === "timeline") {
      const ancestor = base.field("ancestor");
      baseData = { source, storage: storageUrl(base.field("storage")), ...(ancestor.isAbsent ? {} : { ancestor: parseAncestor(ancestor) }) };
    } else if (source !== "initdb") {
      base.field("source").fail(`must be "initdb", "snapshot" or "timeline", got "${source}"`);
    }
  }
  const store = reader.field("extension_store");
  const extensionStore = store.isAbsent
    ? undefined
    : { addr: hostPort(store.field("addr")), token: store.field("download_token").optionalString() ?? "" };
  const portReader = reader.field("port");
  let port: number | undefined;
  if (!portReader.isAbsent) {
    port = portReader.number();
    if (!Number.isInteger(port) || port < 1 || port > 65535) portReader.fail(`must be an integer in 1..65535, got ${port}`);
  }
  return { baseData, extensionStore, port };
}

function parseAncestor(reader: JsonReader): TimelineAncestorSpec {
  reader.object();
  const timelineId = reader.field("timeline_id").nonEmptyString();
  const problem = resourceIdProblem(timelineId);
  if (problem) reader.field("timeline_id").fail(`${JSON.stringify(timelineId)} ${problem}`);
  const lsn = reader.field("lsn");
  const time = reader.field("time");
  if (!lsn.isAbsent && !time.isAbsent) reader.fail('names both "lsn" and "time"; give one');
  if (!lsn.isAbsent) return { timelineId, point: { lsn: lsnOf(lsn) } };
  if (!time.isAbsent) {
    const text = time.nonEmptyString();
    const date = new Date(text);
    if (Number.isNaN(date.getTime()) || !/^\d{4}-\d\d-\d\dT/.test(text)) time.fail(`must be an ISO-8601 time such as "2026-12-06T10:00:00Z", got "${text}"`);
    return { timelineId, point: { time: date } };
  }
  return { timelineId, point: { latest: true } };
}

/** Neon's ComputeMode JSON: "Primary" (default), {"Static": "X/Y"} or "Replica". */
function parseMode(reader: JsonReader): ComputeMode {
  if (reader.isAbsent || reader.value === "Primary") return { kind: "primary" };
  if (reader.value === "Replica") return { kind: "replica" };
  if (typeof reader.value === "object" && !Array.isArray(reader.value) && Object.keys(reader.value as object).length === 1 && "Static" in (reader.value as object)) {
    return { kind: "static", lsn: lsnOf(reader.field("Static")) };
  }
  return reader.fail(`must be "Primary", "Replica" or {"Static": "<lsn>"}, got ${JSON.stringify(reader.value)}`);
}

function lsnOf(reader: JsonReader): bigint {
  const text = reader.nonEmptyString();
  try {
    return parseLsn(text);
  } catch {
    return reader.fail(`must be an LSN "X/Y" in hex, e.g. "0/16B5BA8", got "${text}"`);
  }
}

function storageUrl(reader: JsonReader): string {
  const storage = reader.nonEmptyString();
  if (!/^(file:\/\/\/|s3:\/\/)/.test(storage)) reader.fail(`must be a file:///abs/dir or s3://bucket/prefix URL, got "${storage}"`);
  return storage;
}

function identifier(reader: JsonReader): string {
  const name = reader.nonEmptyString();
  if (Buffer.byteLength(name) > 63) reader.fail(`"${name.slice(0, 20)}…" is longer than Postgres's 63-byte identifier limit`);
  if (name.includes("\0")) reader.fail("must not contain NUL");
  return name;
}

/** host:port, or several separated by commas (replicas of one service). */
function hostPort(reader: JsonReader): string {
  const addr = reader.nonEmptyString();
  for (const one of addr.split(",")) {
    const match = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(one);
    if (!match || Number(match[2]) < 1 || Number(match[2]) > 65535) {
      reader.fail(`must be host:port or a comma-separated list of them (replicas), got "${addr}"`);
    }
  }
  return addr;
}

function unique(reader: JsonReader, names: readonly string[], what: string): void {
  const seen = new Set<string>();
  names.forEach((name, i) => {
    if (seen.has(name)) throw new SpecError(`${reader.path}[${i}].name`, `${what} "${name}" appears twice`);
    seen.add(name);
  });
}
