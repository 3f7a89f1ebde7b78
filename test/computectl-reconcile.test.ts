import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { reconcileCatalog, scramVerifier, type ConnectTo } from "../src/computectl/index.js";
import type { RunningPostgres } from "../src/pg/index.js";
import { spec, startScratchPostgres, traversableTempDir } from "./computectl-fixtures.js";

describe("roles and databases reconciliation", () => {
  let tmp: { dir: string; remove(): Promise<void> };
  let postgres: RunningPostgres;
  const connectTo: ConnectTo = async (database) => {
    const client = new pg.Client({ connectionString: postgres.connectionUri(database) });
    await client.connect();
    return client;
  };
  const sql = async <T extends pg.QueryResultRow>(query: string, database = "postgres"): Promise<T[]> => {
    const client = await connectTo(database);
    try {
      return (await client.query<T>(query)).rows;
    } finally {
      await client.end();
    }
  };
  const alicePassword = scramVerifier("alice-pw");

  beforeAll(async () => {
    tmp = await traversableTempDir("pgmesh-reconcile-");
    postgres = await startScratchPostgres(tmp.dir);
  });

  afterAll(async () => {
    await postgres?.stop("immediate");
    await tmp.remove();
  });

  const base = {
    roles: [
      { name: "alice", encrypted_password: alicePassword, options: [{ name: "createdb", value: "true", vartype: "bool" }] },
      { name: 'we"ird name', encrypted_password: null, options: null },
    ],
    databases: [{ name: "app", owner: "alice", options: null }, { name: "Other DB", owner: 'we"ird name', options: null }],
    settings: [],
  };

  it("creates the spec's roles and databases, and changes nothing the second time", async () => {
    const first = await reconcileCatalog(spec({ cluster: base }), connectTo);
    expect(first).toHaveLength(4);
    expect(await reconcileCatalog(spec({ cluster: base }), connectTo)).toEqual([]);
    const roles = await sql<{ rolname: string; rolcreatedb: boolean; rolpassword: string | null }>(
      `SELECT rolname, rolcreatedb, rolpassword FROM pg_authid WHERE rolname IN ('alice', 'we"ird name') ORDER BY rolname`);
    expect(roles).toEqual([
      { rolname: "alice", rolcreatedb: true, rolpassword: alicePassword },
      { rolname: 'we"ird name', rolcreatedb: false, rolpassword: null },
    ]);
    const dbs = await sql<{ datname: string; owner: string }>(
      `SELECT datname, pg_get_userbyid(datdba) AS owner FROM pg_database WHERE datname IN ('app', 'Other DB') ORDER BY datname`);
    expect(dbs).toEqual([{ datname: "Other DB", owner: 'we"ird name' }, { datname: "app", owner: "alice" }]);
  });

  it("alters an existing role only in the options the spec names that differ", async () => {
    const limited = { ...base, roles: [{ ...base.roles[0], options: [
      { name: "CREATEDB", value: null, vartype: "bool" }, { name: "CONNECTION LIMIT", value: "3", vartype: "integer" },
      { name: "VALID UNTIL", value: "infinity", vartype: "string" },
    ] }, base.roles[1]] };
    expect(await reconcileCatalog(spec({ cluster: limited }), connectTo)).toEqual([`ALTER ROLE "alice" CONNECTION LIMIT 3 VALID UNTIL 'infinity'`]);
    expect(await reconcileCatalog(spec({ cluster: limited }), connectTo)).toEqual([]);
  });

  it("applies only the difference of a changed spec", async () => {
    const bobPassword = scramVerifier("bob-pw");
    const changed = {
      ...base,
      roles: [...base.roles, { name: "bob", encrypted_password: bobPassword, options: null }],
      databases: [{ name: "app", owner: "bob", options: [{ name: "connection_limit", value: "5", vartype: "integer" }] }, base.databases[1]],
    };
    const ran = await reconcileCatalog(spec({ cluster: changed }), connectTo);
    expect(ran).toEqual([
      `CREATE ROLE "bob" LOGIN PASSWORD '${bobPassword}'`,
      'ALTER DATABASE "app" OWNER TO "bob"',
      'ALTER DATABASE "app" CONNECTION LIMIT 5',
    ]);
    expect(await reconcileCatalog(spec({ cluster: changed }), connectTo)).toEqual([]);
  });

  it("reassigns and drops a deleted role's objects in every database before dropping it", async () => {
    await reconcileCatalog(spec({ cluster: { ...base, roles: [...base.roles, { name: "carol" }] } }), connectTo);
    const app = await connectTo("app");
    await app.query('CREATE TABLE carols_table (id int); ALTER TABLE carols_table OWNER TO carol; GRANT SELECT ON carols_table TO "we""ird name"');
    await app.end();
    const other = await connectTo("Other DB");
    await other.query("CREATE TABLE t (id int); GRANT SELECT ON t TO carol");
    await other.end();

    const ran = await reconcileCatalog(spec({ cluster: base, delta_operations: [{ action: "delete_role", name: "carol" }] }), connectTo);
    expect(ran).toContain('DROP ROLE IF EXISTS "carol"');
    expect(await sql("SELECT 1 FROM pg_roles WHERE rolname = 'carol'")).toEqual([]);
    expect(await sql<{ owner: string }>("SELECT tableowner AS owner FROM pg_tables WHERE tablename = 'carols_table'", "app"))
      .toEqual([{ owner: "alice" }]);
    expect(await reconcileCatalog(spec({ cluster: base, delta_operations: [{ action: "delete_role", name: "carol" }] }), connectTo)).toEqual([]);
  });

  it("renames and drops databases and roles through delta_operations, once", async () => {
    const renamed = {
      ...base,
      roles: [{ ...base.roles[0], name: "alicia" }, base.roles[1]],
      databases: [{ name: "application", owner: "alicia", options: null }],
    };
    const deltas = [
      { action: "rename_role", name: "alice", new_name: "alicia" },
      { action: "rename_db", name: "app", new_name: "application" },
      { action: "delete_db", name: "Other DB" },
    ];
    const ran = await reconcileCatalog(spec({ cluster: renamed, delta_operations: deltas }), connectTo);
    expect(ran).toEqual([
      'ALTER ROLE "alice" RENAME TO "alicia"',
      // app was alice's, so the renamed role owns it already; her SCRAM verifier survives the rename.
      'ALTER DATABASE "app" RENAME TO "application"',
      'DROP DATABASE IF EXISTS "Other DB" WITH (FORCE)',
    ]);
    expect(await reconcileCatalog(spec({ cluster: renamed, delta_operations: deltas }), connectTo)).toEqual([]);
  });

  it("leaves a role alone whose attributes and verifier already match", async () => {
    const rows = await sql<{ rolpassword: string }>("SELECT rolpassword FROM pg_authid WHERE rolname = 'alicia'");
    expect(rows[0]!.rolpassword).toBe(alicePassword);
  });
});
