import { scramVerifier } from "../computectl/index.js";

export interface DemoSpecInput {
  readonly tenantId: string;
  readonly timelineId: string;
  readonly endpointId: string;
  readonly appPassword: string;
  readonly pgPort: number;
  /** Neon's remote_extensions JSON, from ExtensionStore.ExportRemoteExtensions. */
  readonly remoteExtensions: unknown;
  readonly extensionStoreAddr: string;
  readonly downloadToken: string;
  readonly epufsAddr: string;
  readonly computeToken: string;
  /** Where the compute's timeline is kept (file:///… or s3://…): its tables outlive the demo. */
  readonly timelineStorage: string;
}

/** A compute spec in Neon's ComputeSpec shape plus the pgmesh object (see compute-ctl's spec docs). */
export function demoComputeSpec(input: DemoSpecInput): Record<string, unknown> {
  return {
    format_version: 1.0,
    cluster: {
      cluster_id: "demo",
      name: "pgmesh demo",
      roles: [{ name: "app", encrypted_password: scramVerifier(input.appPassword), options: null }],
      databases: [{ name: "app", owner: "app", options: null }],
      settings: [
        { name: "pg_stat_statements.track", value: "all", vartype: "enum" },
        { name: "log_min_duration_statement", value: "1000", vartype: "integer" },
      ],
      postgresql_conf: null,
    },
    delta_operations: null,
    skip_pg_catalog_updates: false,
    tenant_id: input.tenantId,
    timeline_id: input.timelineId,
    endpoint_id: input.endpointId,
    remote_extensions: input.remoteExtensions,
    endpoint_storage_addr: input.epufsAddr,
    endpoint_storage_token: input.computeToken,
    pgmesh: {
      base_data: { source: "timeline", storage: input.timelineStorage },
      extension_store: { addr: input.extensionStoreAddr, download_token: input.downloadToken },
      port: input.pgPort,
    },
  };
}
