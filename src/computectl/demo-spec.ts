import { scramVerifier } from "./scram-verifier.js";

export interface DemoSpecOptions {
  readonly tenantId: string;
  readonly timelineId: string;
  readonly endpointId: string;
  /** Password of the demo role (stored as a SCRAM verifier in the spec). */
  readonly password: string;
  /** Role and database name (default "demo"). */
  readonly name?: string;
  /** Epufs host:port and a compute token for the endpoint. */
  readonly endpointStorage?: { readonly addr: string; readonly token: string };
  /** ExtensionStore host:port and a download token (IssueDownloadToken). */
  readonly extensionStore?: { readonly addr: string; readonly downloadToken: string };
  /** ExportRemoteExtensions' remote_extensions_json for the tenant. */
  readonly remoteExtensionsJson?: string;
  /** Libraries to preload besides pgmesh's (e.g. extensions that need it). */
  readonly sharedPreloadLibraries?: readonly string[];
  /** Postgres port (default: compute-ctl chooses). */
  readonly port?: number;
}

/**
 * A compute spec (JSON shape, ready for Configure or -S) for a demo compute:
 * one login role and one database it owns, a fresh initdb, pg_stat_statements
 * tracking everything, and the given Epufs and ExtensionStore wiring.
 */
export function buildDemoSpec(options: DemoSpecOptions): Record<string, unknown> {
  const name = options.name ?? "demo";
  const settings: { name: string; value: string; vartype: string }[] = [
    { name: "pg_stat_statements.track", value: "all", vartype: "enum" },
    { name: "log_min_messages", value: "warning", vartype: "enum" },
  ];
  if (options.sharedPreloadLibraries?.length) {
    settings.push({ name: "shared_preload_libraries", value: options.sharedPreloadLibraries.join(","), vartype: "string" });
  }
  return {
    format_version: 1.0,
    cluster: {
      cluster_id: `${options.tenantId}-${options.endpointId}`,
      name,
      roles: [{ name, encrypted_password: scramVerifier(options.password), options: [{ name: "createdb", value: "true", vartype: "bool" }] }],
      databases: [{ name, owner: name, options: null }],
      settings,
    },
    delta_operations: null,
    skip_pg_catalog_updates: false,
    tenant_id: options.tenantId,
    timeline_id: options.timelineId,
    endpoint_id: options.endpointId,
    remote_extensions: options.remoteExtensionsJson ? JSON.parse(options.remoteExtensionsJson) : null,
    ...(options.endpointStorage ? { endpoint_storage_addr: options.endpointStorage.addr, endpoint_storage_token: options.endpointStorage.token } : {}),
    pgmesh: {
      base_data: { source: "initdb" },
      ...(options.extensionStore ? { extension_store: { addr: options.extensionStore.addr, download_token: options.extensionStore.downloadToken } } : {}),
      ...(options.port !== undefined ? { port: options.port } : {}),
    },
  };
}
