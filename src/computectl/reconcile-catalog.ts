import pg from "pg";
import { adminRole, type ComputeSpec, type DatabaseSpec, type RoleAttributes, type RoleSpec } from "./compute-spec.js";

const { escapeIdentifier: ident, escapeLiteral: literal } = pg;

/** Opens a maintenance connection to one database (application_name marks it as compute-ctl's). */
export type ConnectTo = (database: string) => Promise<pg.Client>;

interface ExistingRole {
  readonly password: string | null;
  readonly attributes: RoleAttributes;
}

/**
 * Brings roles and databases in line with the spec and returns the statements
 * it ran: none when they already match, so running it twice changes nothing
 * the second time, and a reconfigure applies only the difference. Roles and
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
      const sql = roleStatement(role, roles.get(role.name));
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
    rolinherit: boolean; rolreplication: boolean; rolbypassrls: boolean; rolconnlimit: number;
  }>(
    `SELECT rolname, rolpassword, rolcanlogin, rolcreatedb, rolcreaterole, rolinherit, rolreplication, rolbypassrls, rolconnlimit
       FROM pg_catalog.pg_authid`,
  );
  return new Map(rows.map((r) => [r.rolname, {
    password: r.rolpassword,
    attributes: {
      login: r.rolcanlogin, createdb: r.rolcreatedb, createrole: r.rolcreaterole, inherit: r.rolinherit,
      replication: r.rolreplication, bypassrls: r.rolbypassrls, connectionLimit: r.rolconnlimit,
    },
  }]));
}

async function readDatabases(client: pg.Client): Promise<Map<string, { owner: string; connectionLimit: number }>> {
  const { rows } = await client.query<{ datname: string; owner: string; datconnlimit: number }>(
    `SELECT datname, pg_catalog.pg_get_userbyid(datdba) AS owner, datconnlimit
       FROM pg_catalog.pg_database WHERE datallowconn AND NOT datistemplate`,
  );
  return new Map(rows.map((r) => [r.datname, { owner: r.owner, connectionLimit: r.datconnlimit }]));
}

/** CREATE ROLE, ALTER ROLE with only what differs, or undefined when the role matches. */
function roleStatement(role: RoleSpec, existing: ExistingRole | undefined): string | undefined {
  const want = role.attributes;
  const clauses: string[] = [];
  const flag = (on: boolean, word: string) => (on ? word : `NO${word}`);
  const flags: [keyof RoleAttributes, string][] = [
    ["login", "LOGIN"], ["createdb", "CREATEDB"], ["createrole", "CREATEROLE"],
    ["inherit", "INHERIT"], ["replication", "REPLICATION"], ["bypassrls", "BYPASSRLS"],
  ];
  for (const [key, word] of flags) {
    if (!existing || existing.attributes[key] !== want[key]) clauses.push(flag(want[key] as boolean, word));
  }
  if (!existing || existing.attributes.connectionLimit !== want.connectionLimit) {
    clauses.push(`CONNECTION LIMIT ${want.connectionLimit}`);
  }
  if (!existing || existing.password !== role.encryptedPassword) {
    clauses.push(role.encryptedPassword === null ? "PASSWORD NULL" : `PASSWORD ${literal(role.encryptedPassword)}`);
  }
  if (!existing) return `CREATE ROLE ${ident(role.name)} ${clauses.join(" ")}`;
  return clauses.length > 0 ? `ALTER ROLE ${ident(role.name)} ${clauses.join(" ")}` : undefined;
}

function databaseStatements(db: DatabaseSpec, existing: { owner: string; connectionLimit: number } | undefined): string[] {
  const name = ident(db.name);
  if (!existing) {
    return [`CREATE DATABASE ${name} OWNER ${ident(db.owner)} CONNECTION LIMIT ${db.connectionLimit}`];
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
