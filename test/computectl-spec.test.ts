import { Code } from "@connectrpc/connect";
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
    expect(spec.roles[0]).toMatchObject({ name: "alice", encryptedPassword: verifier, attributes: { login: true, createdb: true } });
    expect(spec.databases[0]).toEqual({ name: "app", owner: "alice", connectionLimit: -1 });
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

  it("rejects an unknown delta action and a rename without new_name", () => {
    expect(specError(specJson({ delta_operations: [{ action: "drop_all", name: "x" }] })).field).toBe("delta_operations[0].action");
    expect(specError(specJson({ delta_operations: [{ action: "rename_role", name: "x" }] })).field).toBe("delta_operations[0].new_name");
  });

  it("rejects an unsupported role option", () => {
    const err = specError(specJson({ cluster: { roles: [{ name: "a", options: [{ name: "superuser", value: null, vartype: "bool" }] }] } }));
    expect(err.field).toBe("cluster.roles[0].options[0].name");
    expect(err.rawMessage).toMatch(/supported: login, createdb/);
  });

  it("rejects a setting value with a line break", () => {
    expect(specError(specJson({ cluster: { settings: [{ name: "work_mem", value: "1MB\nport = 1" }] } })).field).toBe("cluster.settings[0].value");
  });

  it("requires the endpoint ids when endpoint storage is set", () => {
    expect(specError({ ...specJson({ endpoint_storage_addr: "127.0.0.1:7102" }), endpoint_id: undefined }).field).toBe("endpoint_id");
  });

  it("rejects an unknown base data source and a bad format_version", () => {
    expect(specError(specJson({ pgmesh: { base_data: { source: "pageserver" } } })).field).toBe("pgmesh.base_data.source");
    expect(specError(specJson({ format_version: 2 })).field).toBe("format_version");
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
    const err = specError(specJson({ remote_extensions: { extension_data: { x: { control_data: {}, archive_path: "x.tar" } } } }));
    expect(err.field).toBe("remote_extensions.extension_data.x.sha256");
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
    expect(spec.databases).toEqual([{ name: "demo", owner: "demo", connectionLimit: -1 }]);
    expect(spec.settings).toContainEqual({ name: "shared_preload_libraries", value: "hypopg" });
    expect(spec.endpointStorage).toEqual({ addr: "127.0.0.1:7102", token: "tok" });
  });
});
