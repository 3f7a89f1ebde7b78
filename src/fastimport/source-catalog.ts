import pg from "pg";
import { FastImportError, SourceUnreachableError } from "./fast-import-errors.js";
import type { Selection } from "./fast-import-options.js";
import type { SourceConnection } from "./source-connection.js";

/** One database to import, as the source describes it. */
export interface SourceDatabase {
  readonly name: string;
  readonly encoding: string;
  readonly collate: string;
  readonly ctype: string;
  readonly sizeBytes: number;
  /** ALTER DATABASE … SET values ("name=value"); pg_dump without --create leaves them out. */
  readonly settings: readonly string[];
  /** User tables and materialized views (their data is what pg_dump copies). */
  readonly tables: number;
}

export interface SourceCatalog {
  readonly serverVersionNum: number;
  readonly databases: readonly SourceDatabase[];
  /** undefined: every role (whole instance). */
  readonly roles: readonly string[] | undefined;
  /** ALTER ROLE … IN DATABASE … SET values, which pg_dumpall --roles-only leaves out. */
  readonly roleSettings: readonly RoleDatabaseSettings[];
}

export interface RoleDatabaseSettings {
  readonly role: string;
  readonly database: string;
  /** "name=value" each. */
  readonly settings: readonly string[];
}

const connectTimeoutMs = 15_000;

/**
 * Connects to the source, checks its version against the local pg_dump, and
 * resolves the selection: which databases exist (every non-template one that
 * accepts connections for a whole instance), their encoding and locale, size
 * and table count. Also proves each database accepts our login before any
 * work starts.
 */
export async function inspectSource(source: SourceConnection, selection: Selection, localMajor: number): Promise<SourceCatalog> {
  const first = selection.wholeInstance ? (source.database ?? "postgres") : selection.databases[0]!;
  const rows = await withClient(source, first, async (client) => {
    const version = await client.query<{ v: string }>("select current_setting('server_version_num') as v");
    const databases = await client.query<{ name: string; encoding: string; collate: string; ctype: string; size: string; settings: string[] }>(
      `select d.datname as name, pg_encoding_to_char(d.encoding) as encoding, d.datcollate as collate, d.datctype as ctype,
              case when has_database_privilege(d.oid, 'CONNECT') then pg_database_size(d.oid) else 0 end as size,
              coalesce((select s.setconfig from pg_db_role_setting s where s.setdatabase = d.oid and s.setrole = 0), '{}') as settings
         from pg_database d where not d.datistemplate and d.datallowconn order by d.datname`,
    );
    const roleSettings = await client.query<{ role: string; database: string; settings: string[] }>(
      `select r.rolname as role, d.datname as database, s.setconfig as settings
         from pg_db_role_setting s join pg_roles r on r.oid = s.setrole join pg_database d on d.oid = s.setdatabase
        order by 1, 2`,
    );
    return { versionNum: Number(version.rows[0]!.v), databases: databases.rows, roleSettings: roleSettings.rows };
  });
  const sourceMajor = Math.floor(rows.versionNum / 10000);
  if (sourceMajor > localMajor) {
    throw new FastImportError("check", `the source runs PostgreSQL ${sourceMajor}, newer than the local ${localMajor}; pg_dump cannot read it. Use a bundle of version ${sourceMajor} or newer (--pg-bin)`);
  }
  const byName = new Map(rows.databases.map((row) => [row.name, row]));
  const names = selection.wholeInstance ? rows.databases.map((row) => row.name) : selection.databases;
  const databases: SourceDatabase[] = [];
  for (const name of names) {
    const row = byName.get(name);
    if (row === undefined) {
      throw new FastImportError("check", `database ${JSON.stringify(name)} does not exist on the source ${source.redacted(first)} (or is a template or does not allow connections); check --databases`);
    }
    const tables = await withClient(source, name, async (client) => {
      const result = await client.query<{ n: string }>(
        `select count(*) as n from pg_class c join pg_namespace n on n.oid = c.relnamespace
          where c.relkind in ('r', 'm') and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname !~ '^pg_toast'`,
      );
      return Number(result.rows[0]!.n);
    });
    databases.push({ name, encoding: row.encoding, collate: row.collate, ctype: row.ctype, sizeBytes: Number(row.size), settings: row.settings, tables });
  }
  return {
    serverVersionNum: rows.versionNum,
    databases,
    roles: selection.wholeInstance ? undefined : selection.roles,
    roleSettings: rows.roleSettings,
  };
}

async function withClient<T>(source: SourceConnection, database: string, use: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({
    connectionString: source.clientUri(database),
    connectionTimeoutMillis: connectTimeoutMs,
    application_name: "pgmesh-fast-import",
  });
  // A dropped connection emits "error" on the client; the query that needs it rejects anyway.
  client.on("error", () => undefined);
  try {
    await client.connect();
  } catch (error) {
    await client.end().catch(() => undefined);
    throw new SourceUnreachableError(source.redacted(database), describeConnectError(error));
  }
  try {
    return await use(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

function describeConnectError(error: unknown): string {
  const code = (error as { code?: string }).code;
  const message = error instanceof Error ? error.message : String(error);
  switch (code) {
    case "ECONNREFUSED":
      return "connection refused (nothing listens on that host and port)";
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return "the host name does not resolve";
    case "28P01":
      return "password authentication failed";
    case "3D000":
      return message;
    default:
      return /timeout/i.test(message) ? `no answer within ${connectTimeoutMs / 1000} s` : message;
  }
}
