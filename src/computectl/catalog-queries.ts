import type pg from "pg";
import type { ConnectTo } from "./reconcile-catalog.js";

/** One row of GetInsights. */
export interface StatementInsight {
  readonly query: string;
  readonly calls: number;
  readonly totalExecTimeMs: number;
  readonly meanExecTimeMs: number;
  readonly rows: number;
  readonly database: string;
  readonly role: string;
}

/** Top statements of pg_stat_statements by total execution time (creates the extension's view in this database if needed). */
export async function statementInsights(client: pg.Client, limit: number): Promise<StatementInsight[]> {
  await client.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
  const { rows } = await client.query<{
    query: string; calls: string; total_exec_time: number; mean_exec_time: number; rows: string; datname: string | null; rolname: string | null;
  }>(
    `SELECT s.query, s.calls, s.total_exec_time, s.mean_exec_time, s.rows, d.datname, r.rolname
       FROM pg_stat_statements s
       LEFT JOIN pg_catalog.pg_database d ON d.oid = s.dbid
       LEFT JOIN pg_catalog.pg_roles r ON r.oid = s.userid
      ORDER BY s.total_exec_time DESC LIMIT $1`,
    [limit],
  );
  return rows.map((r) => ({
    query: r.query, calls: Number(r.calls), totalExecTimeMs: r.total_exec_time, meanExecTimeMs: r.mean_exec_time,
    rows: Number(r.rows), database: r.datname ?? "", role: r.rolname ?? "",
  }));
}

/** Databases by name, templates excluded. */
export async function listDatabases(client: pg.Client): Promise<{ name: string; owner: string }[]> {
  const { rows } = await client.query<{ name: string; owner: string }>(
    `SELECT datname AS name, pg_catalog.pg_get_userbyid(datdba) AS owner
       FROM pg_catalog.pg_database WHERE NOT datistemplate ORDER BY datname`,
  );
  return rows;
}

/** Roles by name, pg_* system roles excluded. */
export async function listRoles(client: pg.Client): Promise<{ name: string; canLogin: boolean; superuser: boolean }[]> {
  const { rows } = await client.query<{ name: string; canLogin: boolean; superuser: boolean }>(
    `SELECT rolname AS name, rolcanlogin AS "canLogin", rolsuper AS superuser
       FROM pg_catalog.pg_roles WHERE rolname !~ '^pg_' ORDER BY rolname`,
  );
  return rows;
}

/** Extensions created in any database that accepts connections. */
export async function installedExtensions(connectTo: ConnectTo): Promise<string[]> {
  const admin = await connectTo("postgres");
  let databases: string[];
  try {
    databases = (await admin.query<{ datname: string }>("SELECT datname FROM pg_catalog.pg_database WHERE datallowconn")).rows.map((r) => r.datname);
  } finally {
    await admin.end();
  }
  const names = new Set<string>();
  for (const database of databases) {
    const client = await connectTo(database);
    try {
      for (const row of (await client.query<{ extname: string }>("SELECT extname FROM pg_catalog.pg_extension")).rows) names.add(row.extname);
    } finally {
      await client.end();
    }
  }
  return [...names];
}
