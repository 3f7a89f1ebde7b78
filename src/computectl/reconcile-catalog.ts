import pg from "pg";
import { renderDatabaseOption, renderRoleOptions, roleFlags, type RoleFlag } from "./catalog-options.js";
import { adminRole, type ComputeSpec, type DatabaseSpec, type RoleSpec } from "./compute-spec.js";

const { escapeIdentifier: ident, escapeLiteral: literal } = pg;

/** Opens a maintenance connection to one database (application_name marks it as compute-ctl's). */
export type ConnectTo = (database: string) => Promise<pg.Client>;

interface ExistingRole {
  readonly password: string | null;
  readonly flags: Readonly<Record<RoleFlag, boolean>>;
  readonly connectionLimit: number;
  /** rolvaliduntil as epoch milliseconds (±Infinity for ±infinity); null: none. */
  readonly validUntilMs: number | null;
}

/**
 * Brings roles and databases in line with the spec and returns the statements
 * it ran: none when they already match, so running it twice changes nothing
 * the second time, and a reconfigure applies only the difference. An
 * existing role is altered only where it differs from what the spec names
 * (its password, the options it lists), so an attribute an administrator
 * granted that the spec does not mention stays. Roles and
 * databases the spec does not mention are left alone unless delta_operations
 * drop them; a dropped role's objects are reassigned to the database owner
 * (or cloud_admin) and its privileges dropped in every database first.
 */
export async function reconcileCatalog(spec: ComputeSpec, connectTo: ConnectTo): Promise<string[]> {
  const ran: string[] = [];
  const admin = await connectTo("postgres");
  const run = async (client: pg.Client, sql: string) => {
    await client.query(sql);
    ran.push(sql);
  };
  try {
    let roles = await readRoles(admin);
    for (const op of spec.deltaOperations) {
      if (op.action === "rename_role" && roles.has(op.name) && !roles.has(op.newName)) {
        await run(admin, `ALTER ROLE ${ident(op.name)} RENAME TO ${ident(op.newName)}`);
      }
    }
    roles = await readRoles(admin);
    for (const role of spec.roles) {
      const sql = await roleStatement(admin, role, roles.get(role.name));
      if (sql) await run(admin, sql);
    }

    let databases = await readDatabases(admin);
    for (const op of spec.deltaOperations) {
      if (op.action === "rename_db" && databases.has(op.name) && !databases.has(op.newName)) {
        await disconnectClients(admin, op.name);
        await run(admin, `ALTER DATABASE ${ident(op.name)} RENAME TO ${ident(op.newName)}`);
      }
    }
    databases = await readDatabases(admin);
    for (const db of spec.databases) {
      for (const sql of databaseStatements(db, databases.get(db.name))) await run(admin, sql);
    }
    for (const op of spec.deltaOperations) {
      if (op.action === "delete_db" && databases.has(op.name)) {
        await run(admin, `DROP DATABASE IF EXISTS ${ident(op.name)} WITH (FORCE)`);
      }
    }

    const deleted = spec.deltaOperations.filter((op) => op.action === "delete_role" && roles.has(op.name)).map((op) => op.name);
    if (deleted.length > 0) {
      databases = await readDatabases(admin);
      for (const [name, existing] of databases) {
        const db = await connectTo(name);
        try {
          for (const role of deleted) {
            const heir = existing.owner === role ? adminRole : existing.owner;
            await run(db, `REASSIGN OWNED BY ${ident(role)} TO ${ident(heir)}`);
            await run(db, `DROP OWNED BY ${ident(role)}`);
          }
        } finally {
          await db.end();
        }
      }
      for (const role of deleted) await run(admin, `DROP ROLE IF EXISTS ${ident(role)}`);
    }
  } finally {
    await admin.end();
  }
  return ran;
}

async function readRoles(client: pg.Client): Promise<Map<string, ExistingRole>> {
  const { rows } = await client.query<{
    rolname: string; rolpassword: string | null; rolcanlogin: boolean; rolcreatedb: boolean; rolcreaterole: boolean;
    rolinherit: boolean; rolreplication: boolean; rolbypassrls: boolean; rolconnlimit: number; valid_until_ms: string | null;
  }>(
    `SELECT rolname, rolpassword, rolcanlogin, rolcreatedb, rolcreaterole, rolinherit, rolreplication, rolbypassrls, rolconnlimit,
            (extract(epoch FROM rolvaliduntil) * 1000)::text AS valid_until_ms
       FROM pg_catalog.pg_authid`,
  );
  return new Map(rows.map((r) => [r.rolname, {
    password: r.rolpassword,
    flags: {
      login: r.rolcanlogin, createdb: r.rolcreatedb, createrole: r.rolcreaterole, inherit: r.rolinherit,
      replication: r.rolreplication, bypassrls: r.rolbypassrls,
    },
    connectionLimit: r.rolconnlimit,
    validUntilMs: r.valid_until_ms === null ? null : Number(r.valid_until_ms),
  }]));
}

async function readDatabases(client: pg.Client): Promise<Map<string, { owner: string; connectionLimit: number }>> {
  const { rows } = await client.query<{ datname: string; owner: string; datconnlimit: number }>(
    `SELECT datname, pg_catalog.pg_get_userbyid(datdba) AS owner, datconnlimit
       FROM pg_catalog.pg_database WHERE datallowconn AND NOT datistemplate`,
  );
  return new Map(rows.map((r) => [r.datname, { owner: r.owner, connectionLimit: r.datconnlimit }]));
}

/**
 * A new role: `CREATE ROLE name <options> LOGIN PASSWORD …` as Neon renders it
 * (LOGIN unless the options say NOLOGIN). An existing role: ALTER ROLE with
 * only the named options and the password that differ, or undefined.
 */
async function roleStatement(client: pg.Client, role: RoleSpec, existing: ExistingRole | undefined): Promise<string | undefined> {
  const password = role.encryptedPassword === null ? "PASSWORD NULL" : `PASSWORD ${literal(role.encryptedPassword)}`;
  if (!existing) {
    const login = role.options.login === undefined ? ["LOGIN"] : [];
    return [`CREATE ROLE ${ident(role.name)}`, ...renderRoleOptions(role.options), ...login, password].join(" ");
  }
  const differing = new Set<string>();
  for (const flag of roleFlags) {
    if (role.options[flag] !== undefined && role.options[flag] !== existing.flags[flag]) differing.add(flag);
  }
  if (role.options.connectionLimit !== undefined && role.options.connectionLimit !== existing.connectionLimit) differing.add("connectionLimit");
  if (role.options.validUntil !== undefined && (await validUntilMs(client, role.options.validUntil)) !== existing.validUntilMs) {
    differing.add("validUntil");
  }
  const clauses = renderRoleOptions(role.options, differing);
  if (existing.password !== role.encryptedPassword) clauses.push(password);
  return clauses.length > 0 ? `ALTER ROLE ${ident(role.name)} ${clauses.join(" ")}` : undefined;
}

/** A VALID UNTIL value as Postgres reads it (in the session's time zone), in the form readRoles gives. */
async function validUntilMs(client: pg.Client, timestamp: string): Promise<number> {
  const { rows } = await client.query<{ ms: string }>("SELECT (extract(epoch FROM $1::timestamptz) * 1000)::text AS ms", [timestamp]);
  return Number(rows[0]!.ms);
}

/** `CREATE DATABASE name LC_COLLATE 'C' … OWNER "owner"` as Neon renders it, or ALTERs of what differs. */
function databaseStatements(db: DatabaseSpec, existing: { owner: string; connectionLimit: number } | undefined): string[] {
  const name = ident(db.name);
  if (!existing) {
    const limit = db.connectionLimit === -1 ? [] : [`CONNECTION LIMIT ${db.connectionLimit}`];
    return [[`CREATE DATABASE ${name}`, ...db.createOptions.map(renderDatabaseOption), `OWNER ${ident(db.owner)}`, ...limit].join(" ")];
  }
  const statements: string[] = [];
  if (existing.owner !== db.owner) statements.push(`ALTER DATABASE ${name} OWNER TO ${ident(db.owner)}`);
  if (existing.connectionLimit !== db.connectionLimit) statements.push(`ALTER DATABASE ${name} CONNECTION LIMIT ${db.connectionLimit}`);
  return statements;
}

/** A database cannot be renamed while anybody is connected to it. */
async function disconnectClients(client: pg.Client, database: string): Promise<void> {
  await client.query(
    "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity WHERE datname = $1 AND pid <> pg_catalog.pg_backend_pid()",
    [database],
  );
}
