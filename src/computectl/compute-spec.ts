import { timelineIdPattern } from "../timeline/index.js";
import { JsonReader } from "./json-reader.js";
import { SpecError } from "./spec-error.js";

/*
 * The compute spec: the parts of Neon's ComputeSpec that apply to pgmesh plus a
 * `pgmesh` object (see /work/notes/compute-spec.md for the JSON shape). Unknown
 * fields are ignored; a bad value is a SpecError (INVALID_ARGUMENT) naming its
 * JSON path.
 */

/** Role attributes compute-ctl manages; set through a role's `options`. */
export interface RoleAttributes {
  readonly login: boolean;
  readonly createdb: boolean;
  readonly createrole: boolean;
  readonly inherit: boolean;
  readonly replication: boolean;
  readonly bypassrls: boolean;
  /** -1: no limit. */
  readonly connectionLimit: number;
}

export interface RoleSpec {
  readonly name: string;
  /** A SCRAM-SHA-256 verifier or an md5 hash, used verbatim; null: no password. */
  readonly encryptedPassword: string | null;
  readonly attributes: RoleAttributes;
}

export interface DatabaseSpec {
  readonly name: string;
  readonly owner: string;
  /** -1: no limit. */
  readonly connectionLimit: number;
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
  /** The timeline tenant_id/timeline_id in a blob store: the compute's data is durable there. */
  | { readonly source: "timeline"; readonly storage: string };

export interface ServiceAddress {
  /** host:port */
  readonly addr: string;
  readonly token: string;
}

export interface ComputeSpec {
  readonly formatVersion: number;
  readonly clusterId?: string;
  readonly clusterName?: string;
  readonly roles: readonly RoleSpec[];
  readonly databases: readonly DatabaseSpec[];
  readonly settings: readonly SettingSpec[];
  /** Raw postgresql.conf text, written first. */
  readonly postgresqlConf?: string;
  readonly deltaOperations: readonly DeltaOperation[];
  readonly skipPgCatalogUpdates: boolean;
  readonly tenantId?: string;
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
}

/** compute-ctl's own superuser; the spec may not manage it. */
export const adminRole = "cloud_admin";

const reservedRoleNames = new Set([adminRole, "public", "none", "current_user", "session_user", "current_role"]);
const templateDatabases = new Set(["template0", "template1"]);

export const defaultRoleAttributes: RoleAttributes = {
  login: true,
  createdb: false,
  createrole: false,
  inherit: true,
  replication: false,
  bypassrls: false,
  connectionLimit: -1,
};

const booleanRoleOptions = ["login", "createdb", "createrole", "inherit", "replication", "bypassrls"] as const;

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
  const formatVersion = root.field("format_version").number();
  if (formatVersion !== 1) root.field("format_version").fail(`must be 1.0, got ${formatVersion}`);
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
  const spec: ComputeSpec = {
    formatVersion,
    clusterId: cluster.field("cluster_id").optionalString(),
    clusterName: cluster.field("name").optionalString(),
    roles,
    databases,
    settings: cluster.field("settings").items().map(parseSetting),
    postgresqlConf: cluster.field("postgresql_conf").optionalString(),
    deltaOperations: root.field("delta_operations").items().map(parseDeltaOperation),
    skipPgCatalogUpdates: root.field("skip_pg_catalog_updates").boolean(false),
    tenantId: root.field("tenant_id").optionalNonEmptyString(),
    timelineId: root.field("timeline_id").optionalNonEmptyString(),
    endpointId: root.field("endpoint_id").optionalNonEmptyString(),
    remoteExtensions: root.field("remote_extensions").isAbsent ? undefined : parseRemoteExtensions(root.field("remote_extensions")),
    endpointStorage: parseEndpointStorage(root),
    ...parsePgmesh(root.field("pgmesh")),
  };
  if (spec.baseData.source === "timeline") {
    for (const id of ["tenant_id", "timeline_id"] as const) {
      const reader = root.field(id);
      if (reader.isAbsent) reader.fail('is required when pgmesh.base_data.source is "timeline" (it names the durable timeline)');
      if (!timelineIdPattern.test(reader.nonEmptyString())) reader.fail('must be 1 to 64 letters, digits, "_" or "-" (a timeline id)');
    }
  }
  if (spec.endpointStorage) {
    for (const id of ["tenant_id", "timeline_id", "endpoint_id"] as const) {
      if (root.field(id).isAbsent) root.field(id).fail("is required when endpoint_storage_addr is set (Epufs files are kept per endpoint)");
    }
  }
  return spec;
}

function parseRole(reader: JsonReader): RoleSpec {
  reader.object();
  const name = identifier(reader.field("name"));
  if (name.startsWith("pg_")) reader.field("name").fail(`role names starting with "pg_" are reserved by Postgres`);
  if (reservedRoleNames.has(name.toLowerCase())) reader.field("name").fail(`"${name}" is reserved`);
  const password = reader.field("encrypted_password");
  const encryptedPassword = password.isAbsent ? null : password.string();
  if (encryptedPassword !== null && !isVerifier(encryptedPassword)) {
    password.fail("must be a SCRAM-SHA-256 verifier (SCRAM-SHA-256$...) or an md5 hash (md5 + 32 hex digits); plain passwords are not accepted");
  }
  const attributes: Record<string, boolean | number> = { ...defaultRoleAttributes };
  for (const option of reader.field("options").items()) {
    option.object();
    const optionName = option.field("name").nonEmptyString().toLowerCase();
    const value = option.field("value");
    if ((booleanRoleOptions as readonly string[]).includes(optionName)) {
      attributes[optionName] = value.isAbsent ? true : parseBoolean(value);
    } else if (optionName === "connection_limit") {
      attributes.connectionLimit = parseConnectionLimit(value);
    } else {
      option.field("name").fail(`unsupported role option "${optionName}"; supported: ${[...booleanRoleOptions, "connection_limit"].join(", ")}`);
    }
  }
  return { name, encryptedPassword, attributes: attributes as unknown as RoleAttributes };
}

function parseDatabase(reader: JsonReader): DatabaseSpec {
  reader.object();
  const name = identifier(reader.field("name"));
  if (templateDatabases.has(name)) reader.field("name").fail(`"${name}" is a template database and cannot be managed`);
  const owner = identifier(reader.field("owner"));
  let connectionLimit = -1;
  for (const option of reader.field("options").items()) {
    option.object();
    const optionName = option.field("name").nonEmptyString().toLowerCase();
    if (optionName !== "connection_limit") option.field("name").fail(`unsupported database option "${optionName}"; supported: connection_limit`);
    connectionLimit = parseConnectionLimit(option.field("value"));
  }
  return { name, owner, connectionLimit };
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

function parseDeltaOperation(reader: JsonReader): DeltaOperation {
  reader.object();
  const actionReader = reader.field("action");
  const action = actionReader.nonEmptyString();
  const name = identifier(reader.field("name"));
  switch (action) {
    case "delete_role":
    case "delete_db":
      if (action === "delete_db" && (templateDatabases.has(name) || name === "postgres")) {
        reader.field("name").fail(`database "${name}" cannot be dropped`);
      }
      return { action, name };
    case "rename_role":
    case "rename_db":
      return { action, name, newName: identifier(reader.field("new_name")) };
    default:
      return actionReader.fail(`unknown action "${action}"; expected delete_role, rename_role, delete_db or rename_db`);
  }
}

function parseRemoteExtensions(reader: JsonReader): RemoteExtensions {
  reader.object();
  const names = (field: string) => reader.field(field).items().map((r) => r.nonEmptyString());
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
    if (sha256 === undefined || !/^[0-9a-f]{64}$/.test(sha256)) {
      throw new SpecError(data.field("sha256").path, "must be 64 lowercase hex digits (or archive_path must contain sha256-<hex>)");
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

function parseEndpointStorage(root: JsonReader): ServiceAddress | undefined {
  const addr = root.field("endpoint_storage_addr");
  if (addr.isAbsent) return undefined;
  return { addr: hostPort(addr), token: root.field("endpoint_storage_token").optionalString() ?? "" };
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
      baseData = { source, storage: storageUrl(base.field("storage")) };
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

function isVerifier(password: string): boolean {
  return /^SCRAM-SHA-256\$\d+:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+$/.test(password) || /^md5[0-9a-f]{32}$/.test(password);
}

function parseBoolean(reader: JsonReader): boolean {
  if (typeof reader.value === "boolean") return reader.value;
  const text = reader.string().toLowerCase();
  if (["true", "on", "yes", "1"].includes(text)) return true;
  if (["false", "off", "no", "0"].includes(text)) return false;
  return reader.fail(`must be true or false, got "${text}"`);
}

function parseConnectionLimit(reader: JsonReader): number {
  const limit = typeof reader.value === "string" ? Number(reader.value) : reader.number();
  if (!Number.isInteger(limit) || limit < -1) reader.fail(`must be an integer >= -1, got ${JSON.stringify(reader.value)}`);
  return limit;
}

function hostPort(reader: JsonReader): string {
  const addr = reader.nonEmptyString();
  const match = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(addr);
  if (!match || Number(match[2]) < 1 || Number(match[2]) > 65535) reader.fail(`must be host:port, got "${addr}"`);
  return addr;
}

function unique(reader: JsonReader, names: readonly string[], what: string): void {
  const seen = new Set<string>();
  names.forEach((name, i) => {
    if (seen.has(name)) throw new SpecError(`${reader.path}[${i}].name`, `${what} "${name}" appears twice`);
    seen.add(name);
  });
}
