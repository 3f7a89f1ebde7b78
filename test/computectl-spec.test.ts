import { Code } from "@connectrpc/connect";
import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { buildDemoSpec, parseComputeSpec, parseComputeSpecJson, scramVerifier, SpecError } from "../src/computectl/index.js";
import { specJson } from "./computectl-fixtures.js";

function specError(value: unknown): SpecError {
  try {
    parseComputeSpec(value);
  } catch (err) {
    if (err instanceof SpecError) return err;
    throw err;
  }
  throw new Error("the spec was accepted");
}

const verifier = scramVerifier("pw");

describe("compute spec", () => {
  it("parses Neon's ComputeSpec fields and the pgmesh object", () => {
    const spec = parseComputeSpec(specJson({
      cluster: {
        cluster_id: "c1", name: "main",
        roles: [{ name: "alice", encrypted_password: verifier, options: [{ name: "createdb", value: null, vartype: "bool" }] }],
        databases: [{ name: "app", owner: "alice", options: null }],
        settings: [{ name: "work_mem", value: "8MB", vartype: "string" }],
        postgresql_conf: "max_connections = 20\n",
      },
      delta_operations: [{ action: "rename_db", name: "old", new_name: "app" }],
      skip_pg_catalog_updates: true,
      endpoint_storage_addr: "127.0.0.1:7102", endpoint_storage_token: "tok",
      pgmesh: { base_data: { source: "snapshot", storage: "file:///snap", prefix: "imports/x/" }, extension_store: { addr: "127.0.0.1:7101", download_token: "dl" }, port: 55433 },
    }));
    expect(spec.roles[0]).toEqual({ name: "alice", encryptedPassword: verifier, options: { createdb: true } });
    expect(spec.databases[0]).toEqual({ name: "app", owner: "alice", connectionLimit: -1, createOptions: [] });
    expect(spec.deltaOperations).toEqual([{ action: "rename_db", name: "old", newName: "app" }]);
    expect(spec.baseData).toEqual({ source: "snapshot", storage: "file:///snap", prefix: "imports/x" });
    expect(spec.endpointStorage).toEqual({ addr: "127.0.0.1:7102", token: "tok" });
    expect(spec.extensionStore).toEqual({ addr: "127.0.0.1:7101", token: "dl" });
    expect(spec).toMatchObject({ port: 55433, skipPgCatalogUpdates: true, postgresqlConf: "max_connections = 20\n", clusterId: "c1" });
  });

  it("ignores unknown fields and defaults to a fresh initdb", () => {
    const spec = parseComputeSpec(specJson({ storage_auth_token: "x", cluster: { roles: null, databases: null, settings: null, whatever: 1 } }));
    expect(spec.baseData).toEqual({ source: "initdb" });
    expect(spec.roles).toEqual([]);
  });

  it("names the field of a role without a name", () => {
    const err = specError(specJson({ cluster: { roles: [{ name: "a" }, { name: "b" }, { name: "" }] } }));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.field).toBe("cluster.roles[2].name");
    expect(err.rawMessage).toBe('invalid compute spec: cluster.roles[2].name: must be a non-empty string, got an empty string');
  });

  it("rejects a plain-text password", () => {
    const err = specError(specJson({ cluster: { roles: [{ name: "a", encrypted_password: "hunter2" }] } }));
    expect(err.field).toBe("cluster.roles[0].encrypted_password");
    expect(err.rawMessage).toMatch(/plain passwords are not accepted/);
  });

  it("rejects a database whose owner is not a spec role", () => {
    const err = specError(specJson({ cluster: { roles: [], databases: [{ name: "app", owner: "bob" }] } }));
    expect(err.field).toBe("cluster.databases[0].owner");
  });

  it("rejects duplicate role names", () => {
    expect(specError(specJson({ cluster: { roles: [{ name: "a" }, { name: "a" }] } })).field).toBe("cluster.roles[1].name");
  });

  it("rejects reserved and over-long role names", () => {
    expect(specError(specJson({ cluster: { roles: [{ name: "pg_monitor" }] } })).rawMessage).toMatch(/reserved/);
    expect(specError(specJson({ cluster: { roles: [{ name: "cloud_admin" }] } })).rawMessage).toMatch(/reserved/);
    expect(specError(specJson({ cluster: { roles: [{ name: "x".repeat(64) }] } })).rawMessage).toMatch(/63-byte/);
  });

  it("skips a delta action it does not know, as Neon does", () => {
    const spec = parseComputeSpec(specJson({ delta_operations: [{ action: "drop_all", name: "x" }, { action: "delete_db", name: "old" }] }));
    expect(spec.deltaOperations).toEqual([{ action: "delete_db", name: "old" }]);
  });

  it("rejects a rename without new_name", () => {
    expect(specError(specJson({ delta_operations: [{ action: "rename_role", name: "x" }] })).field).toBe("delta_operations[0].new_name");
  });

  it("rejects a role option that is not a known keyword", () => {
    const err = specError(specJson({ cluster: { roles: [{ name: "a", options: [{ name: "SUPERUSER", value: null, vartype: "bool" }] }] } }));
    expect(err.field).toBe("cluster.roles[0].options[0].name");
    expect(err.rawMessage).toMatch(/unsupported role option "superuser"; supported \(any case\): login, nologin, createdb/);
  });

  it("reads role options in Neon's spelling (keywords, CONNECTION LIMIT, VALID UNTIL) and pgmesh's", () => {
    const options = [
      { name: "NOLOGIN", value: null, vartype: "bool" }, { name: "CREATEDB", value: null, vartype: "bool" },
      { name: "CONNECTION LIMIT", value: "5", vartype: "integer" }, { name: "VALID UNTIL", value: "2030-01-31", vartype: "string" },
      { name: "inherit", value: "false", vartype: "bool" },
    ];
    expect(parseComputeSpec(specJson({ cluster: { roles: [{ name: "a", options }] } })).roles[0]!.options)
      .toEqual({ login: false, createdb: true, connectionLimit: 5, validUntil: "2030-01-31", inherit: false });
  });

  it("rejects a VALID UNTIL that is not a timestamp, before any SQL sees it", () => {
    const err = specError(specJson({ cluster: { roles: [{ name: "a", options: [{ name: "VALID UNTIL", value: "2030'; DROP ROLE x; --" }] }] } }));
    expect(err.field).toBe("cluster.roles[0].options[0].value");
  });

  it("reads database options Neon sends (LC_COLLATE, LC_CTYPE, TEMPLATE, ENCODING, CONNECTION LIMIT)", () => {
    const options = [
      { name: "LC_COLLATE", value: "C", vartype: "string" }, { name: "LC_CTYPE", value: "C", vartype: "string" },
      { name: "TEMPLATE", value: "template0", vartype: "enum" }, { name: "ENCODING", value: "UTF8", vartype: "string" },
      { name: "CONNECTION LIMIT", value: "7", vartype: "integer" },
    ];
    const spec = parseComputeSpec(specJson({ cluster: { roles: [{ name: "a" }], databases: [{ name: "d", owner: "a", options }] } }));
    expect(spec.databases[0]).toEqual({
      name: "d", owner: "a", connectionLimit: 7,
      createOptions: [
        { keyword: "LC_COLLATE", value: "C" }, { keyword: "LC_CTYPE", value: "C" },
        { keyword: "TEMPLATE", value: "template0" }, { keyword: "ENCODING", value: "UTF8" },
      ],
    });
  });

  it("rejects a database option it does not know and a locale that is not a locale name", () => {
    const db = (options: unknown[]) => specJson({ cluster: { roles: [{ name: "a" }], databases: [{ name: "d", owner: "a", options }] } });
    expect(specError(db([{ name: "TABLESPACE", value: "x" }])).field).toBe("cluster.databases[0].options[0].name");
    expect(specError(db([{ name: "LC_COLLATE", value: "C' TEMPLATE x --" }])).field).toBe("cluster.databases[0].options[0].value");
  });

  it("reads encrypted_password as Neon does: a SCRAM verifier as it is, else an md5 hash without its prefix, absent as no password", () => {
    const spec = parseComputeSpec(specJson({ cluster: { roles: [
      { name: "s", encrypted_password: verifier }, { name: "m", encrypted_password: "6B1D16B78004BBD51FA06AF9EDA75972" }, { name: "n" },
    ] } }));
    expect(spec.roles.map((r) => r.encryptedPassword)).toEqual([verifier, "md56b1d16b78004bbd51fa06af9eda75972", null]);
  });

  it("rejects an md5 hash that carries its prefix (Neon would store md5md5…)", () => {
    const err = specError(specJson({ cluster: { roles: [{ name: "a", encrypted_password: `md5${"a".repeat(32)}` }] } }));
    expect(err.rawMessage).toMatch(/without the "md5" prefix/);
  });

  it("rejects a setting value with a line break", () => {
    expect(specError(specJson({ cluster: { settings: [{ name: "work_mem", value: "1MB\nport = 1" }] } })).field).toBe("cluster.settings[0].value");
  });

  it("requires the endpoint ids when endpoint storage is set", () => {
    expect(specError({ ...specJson({ endpoint_storage_addr: "127.0.0.1:7102" }), endpoint_id: undefined }).field).toBe("endpoint_id");
  });

  it("takes several comma-separated addresses of replicas for Epufs and the extension store", () => {
    const spec = parseComputeSpec(specJson({
      endpoint_storage_addr: "10.0.0.1:7102,10.0.0.2:7102",
      pgmesh: { extension_store: { addr: "10.0.0.1:7101,[::1]:7101", download_token: "dl" } },
    }));
    expect(spec.endpointStorage?.addr).toBe("10.0.0.1:7102,10.0.0.2:7102");
    expect(spec.extensionStore?.addr).toBe("10.0.0.1:7101,[::1]:7101");
    const err = specError(specJson({ endpoint_storage_addr: "10.0.0.1:7102,10.0.0.2" }));
    expect(err.field).toBe("endpoint_storage_addr");
    expect(err.rawMessage).toContain("must be host:port or a comma-separated list of them (replicas)");
  });

  it("rejects an unknown base data source", () => {
    expect(specError(specJson({ pgmesh: { base_data: { source: "pageserver" } } })).field).toBe("pgmesh.base_data.source");
  });

  it("accepts any numeric format_version, as Neon does, and refuses one that is not a number", () => {
    expect(parseComputeSpec(specJson({ format_version: 2.5 })).formatVersion).toBe(2.5);
    expect(specError(specJson({ format_version: "1.0" })).field).toBe("format_version");
  });

  it("takes tenant and timeline from the neon.tenant_id / neon.timeline_id settings when the spec has no tenant_id / timeline_id", () => {
    const settings = [{ name: "neon.tenant_id", value: "t9", vartype: "string" }, { name: "neon.timeline_id", value: "tl9", vartype: "string" }];
    const spec = parseComputeSpec({ ...specJson({ cluster: { roles: [], databases: [], settings } }), tenant_id: undefined, timeline_id: null });
    expect(spec).toMatchObject({ tenantId: "t9", timelineId: "tl9" });
  });

  it("drops the settings only Neon's fork understands, with one warning each, and keeps the rest", () => {
    const settings = [
      { name: "neon.safekeepers", value: "127.0.0.1:6502" }, { name: "shared_preload_libraries", value: "neon,pg_stat_statements" },
      { name: "synchronous_standby_names", value: "walproposer" }, { name: "autoprewarm", value: "off" }, { name: "work_mem", value: "8MB" },
    ];
    const spec = parseComputeSpec(specJson({ cluster: { roles: [], databases: [], settings } }));
    expect(spec.settings).toEqual([{ name: "shared_preload_libraries", value: "pg_stat_statements" }, { name: "work_mem", value: "8MB" }]);
    expect(spec.warnings).toHaveLength(4);
    expect(spec.warnings[0]).toMatch(/^dropped setting neon\.safekeepers: /);
    expect(spec.warnings[1]).toMatch(/^dropped neon from shared_preload_libraries: /);
  });

  it("validates remote_extensions and takes the sha256 from archive_path", () => {
    const sha = "a".repeat(64);
    const spec = parseComputeSpec(specJson({
      remote_extensions: {
        public_extensions: ["hypopg"], custom_extensions: null, library_index: { hypopg: "hypopg" },
        extension_data: { hypopg: { control_data: { "hypopg.control": "default_version = '1.4'" }, archive_path: `extensions/hypopg/sha256-${sha}/bundle.tar` } },
      },
    }));
    expect(spec.remoteExtensions?.extensionData.hypopg).toMatchObject({ sha256: sha, needsSharedPreload: false });
    const err = specError(specJson({ remote_extensions: { extension_data: { x: { control_data: {}, archive_path: "x.tar", sha256: "abc" } } } }));
    expect(err.field).toBe("remote_extensions.extension_data.x.sha256");
  });

  it("accepts Neon's archive_path without a sha256, leaving that extension out with a warning", () => {
    const spec = parseComputeSpec(specJson({
      remote_extensions: {
        public_extensions: ["postgis"], library_index: { "postgis-3": "postgis" },
        extension_data: { postgis: { control_data: { "postgis.control": "" }, archive_path: "5834329303/v15/extensions/postgis.tar.zst" } },
      },
    }));
    expect(spec.remoteExtensions).toMatchObject({ publicExtensions: [], extensionData: {} });
    expect(spec.warnings).toEqual([expect.stringMatching(/^left out extension "postgis": its archive_path 5834329303\/v15\/extensions\/postgis\.tar\.zst names no sha256/)]);
  });

  it("parses Neon's own test spec (libs/compute_api/tests/cluster_spec.json)", async () => {
    const spec = parseComputeSpecJson(await readFile(new URL("./fixtures/neon/cluster_spec.json", import.meta.url), "utf8"));
    expect(spec).toMatchObject({ formatVersion: 1, tenantId: "b0554b632bd4d547a63b86c3630317e8", timelineId: "2414a61ffc94e428f14b5758fe308e13" });
    expect(spec.roles.map((r) => r.name)).toEqual(["postgres", "alexk", 'zenith "new"', "zen", '"name";\\n select 1;', "MyRole"]);
    expect(spec.roles[0]!.encryptedPassword).toBe("md56b1d16b78004bbd51fa06af9eda75972");
    expect(spec.deltaOperations.map((op) => op.action)).toEqual(["delete_db", "rename_db", "delete_role", "rename_role"]);
    expect(spec.settings.map((s) => s.name)).not.toContain("neon.safekeepers");
    expect(spec.warnings).toHaveLength(9);
  });

  it("reports JSON that does not parse", () => {
    expect(() => parseComputeSpecJson("{")).toThrow(/not valid JSON/);
  });
});

describe("demo spec", () => {
  it("builds a spec compute-ctl accepts, with a role that owns its database", () => {
    const spec = parseComputeSpec(buildDemoSpec({
      tenantId: "t", timelineId: "tl", endpointId: "e", password: "pw",
      endpointStorage: { addr: "127.0.0.1:7102", token: "tok" }, extensionStore: { addr: "127.0.0.1:7101", downloadToken: "dl" },
      sharedPreloadLibraries: ["hypopg"],
    }));
    expect(spec.roles.map((r) => r.name)).toEqual(["demo"]);
    expect(spec.roles[0]!.encryptedPassword).toMatch(/^SCRAM-SHA-256\$4096:/);
    expect(spec.databases).toEqual([{ name: "demo", owner: "demo", connectionLimit: -1, createOptions: [] }]);
    expect(spec.settings).toContainEqual({ name: "shared_preload_libraries", value: "hypopg" });
    expect(spec.endpointStorage).toEqual({ addr: "127.0.0.1:7102", token: "tok" });
  });
});
