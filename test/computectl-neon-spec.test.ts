import { readFile } from "node:fs/promises";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseComputeSpecJson, reconcileCatalog, type Compute, type ComputeSpec, type ConnectTo } from "../src/computectl/index.js";
import { newCompute, traversableTempDir } from "./computectl-fixtures.js";

/** Neon's own test spec (test/fixtures/neon/README.md says where it comes from). */
async function neonClusterSpec(): Promise<ComputeSpec> {
  return parseComputeSpecJson(await readFile(new URL("./fixtures/neon/cluster_spec.json", import.meta.url), "utf8"));
}

describe("a compute started from Neon's test spec", () => {
  let tmp: { dir: string; remove(): Promise<void> };
  let compute: Compute;
  let neonSpec: ComputeSpec;
  const connectTo: ConnectTo = async (database) => {
    const uri = new URL(compute.status().connectionUri);
    uri.pathname = `/${encodeURIComponent(database)}`;
    const client = new pg.Client({ connectionString: uri.toString() });
    await client.connect();
    return client;
  };
  const sql = async <T extends pg.QueryResultRow>(...queries: string[]): Promise<T[]> => {
    const client = await connectTo("postgres");
    try {
      let rows: T[] = [];
      for (const query of queries) rows = (await client.query<T>(query)).rows;
      return rows;
    } finally {
      await client.end();
    }
  };

  beforeAll(async () => {
    tmp = await traversableTempDir("pgmesh-neon-spec-");
    neonSpec = await neonClusterSpec();
    compute = newCompute(tmp.dir, { templateRoot: path.join(tmp.dir, "templates") });
    compute.begin("127.0.0.1:1");
    await compute.configure(neonSpec);
    await compute.waitUntilRunning();
  });

  afterAll(async () => {
    await compute?.shutdown();
    await tmp?.remove();
  });

  it("runs without Neon's settings and creates its roles and databases", async () => {
    expect(compute.state.state).toBe("running");
    const roles = await sql<{ rolname: string; rolpassword: string | null }>(
      `SELECT rolname, rolpassword FROM pg_authid WHERE rolname IN ('postgres', 'alexk', 'zenith "new"', 'zen', '"name";\\n select 1;', 'MyRole') ORDER BY rolname`);
    expect(roles).toEqual([
      { rolname: '"name";\\n select 1;', rolpassword: "md55b1d16b78004bbd51fa06af9eda75972" },
      { rolname: "MyRole", rolpassword: "md55b1d16b78004bbd51fa06af9eda75972" },
      { rolname: "alexk", rolpassword: null },
      { rolname: "postgres", rolpassword: "md56b1d16b78004bbd51fa06af9eda75972" },
      { rolname: "zen", rolpassword: "md59b1d16b78004bbd51fa06af9eda75972" },
      { rolname: 'zenith "new"', rolpassword: "md55b1d16b78004bbd51fa06af9eda75972" },
    ]);
    expect(await sql(`SELECT datname, pg_get_userbyid(datdba) AS owner, datcollate, datctype FROM pg_database WHERE datname IN ('DB2', 'zenith', 'zen') ORDER BY datname`))
      .toEqual([
        { datname: "DB2", owner: "alexk", datcollate: "C", datctype: "C" },
        { datname: "zen", owner: "zen", datcollate: expect.any(String), datctype: expect.any(String) },
        { datname: "zenith", owner: "MyRole", datcollate: expect.any(String), datctype: expect.any(String) },
      ]);
  });

  it("says in its status which of Neon's settings it dropped", async () => {
    const { error } = compute.status();
    expect(neonSpec.warnings.length).toBeGreaterThan(0);
    for (const warning of neonSpec.warnings) expect(error).toContain(warning);
    expect(error).toMatch(/dropped .*neon/);
  });

  it("creates a role and a database with the SQL Neon's tests state (pg_helpers_tests.rs)", async () => {
    await sql(`DROP DATABASE "DB2"`, `DROP ROLE "postgres"`);
    expect(await reconcileCatalog(neonSpec, connectTo)).toEqual([
      `CREATE ROLE "postgres" LOGIN PASSWORD 'md56b1d16b78004bbd51fa06af9eda75972'`,
      `CREATE DATABASE "DB2" LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0 OWNER "alexk"`,
    ]);
  });

  it("keeps an administrator's GRANT of CREATEDB through a Configure with the same spec", async () => {
    await sql(`ALTER ROLE "zen" CREATEDB`);
    await compute.configure(neonSpec);
    expect((await compute.waitUntilRunning()).state).toBe("running");
    expect(await sql(`SELECT rolcreatedb FROM pg_roles WHERE rolname = 'zen'`)).toEqual([{ rolcreatedb: true }]);
  });
});
