#!/usr/bin/env node
import { blobStoreOptionsFromEnv, openBlobStore } from "../src/blob/index.js";
import {
  compileServiceConfig,
  defineFlags,
  exitUnlessWritableDirs,
  parseCommandLine,
  serviceFlags,
  storageDirs,
  UsageError,
} from "../src/config/index.js";
import {
  compileEpufsOptions,
  defaultAllowedPaths,
  defaultEndpointQuotaBytes,
  defaultMaxFileBytes,
  Epufs,
  EpufsOptionsError,
  epufsServerParts,
} from "../src/epufs/index.js";
import { createLogger, loadServerAuth, shutdownOnSignal, startServer } from "../src/server/index.js";

const flags = defineFlags({
  ...serviceFlags("epufs"),
  "max-file-bytes": {
    type: "number",
    default: defaultMaxFileBytes,
    help: "Largest file one put may store, in bytes; larger puts answer RESOURCE_EXHAUSTED",
  },
  "endpoint-quota-bytes": {
    type: "number",
    default: defaultEndpointQuotaBytes,
    help: "Most bytes all files of one endpoint may take together; puts beyond it answer RESOURCE_EXHAUSTED",
  },
  "allowed-paths": {
    type: "list",
    valueName: "PATH,...",
    default: [...defaultAllowedPaths],
    help: 'PGDATA paths a put may store ("*" matches within one path segment); others answer FAILED_PRECONDITION',
  },
});

const program = {
  name: "epufs",
  description: [
    "Serves pgmesh.epufs.v1.EpufsService, the Endpoint Persistent Unlogged Files Storage: small per-endpoint",
    "PGDATA files (pg_stat_statements.stat, autoprewarm.blocks ...) kept across restarts, over gRPC, gRPC-Web,",
    "Connect and the plain HTTP routes /tenants/<t>/timelines/<tl>/endpoints/<e>/pgdata/<path>.",
    "A compute token reads and writes its own endpoint; deletes of endpoints, timelines and tenants need",
    "control_plane. SIGTERM drains in-flight calls and exits 0.",
  ].join("\n"),
};

const { config, options } = parseCommandLine(program, flags, {
  validate: ({ values }) => {
    const config = compileServiceConfig(values);
    try {
      const options = compileEpufsOptions({
        maxFileBytes: values.maxFileBytes,
        endpointQuotaBytes: values.endpointQuotaBytes,
        allowedPaths: values.allowedPaths,
      });
      return { config, options };
    } catch (err) {
      if (err instanceof EpufsOptionsError) throw new UsageError(err.message);
      throw err;
    }
  },
});

await exitUnlessWritableDirs(program, storageDirs(config));

const logger = createLogger({ service: "epufs", level: config.logLevel });
const store = await openBlobStore(config.storageUrl, {
  ...blobStoreOptionsFromEnv(process.env),
  s3ConditionalWrites: config.s3ConditionalWrites,
});
const auth = await loadServerAuth(config, logger);
const server = await startServer({
  host: config.host,
  port: config.port,
  auth,
  logger,
  ...epufsServerParts(new Epufs(store, options), auth),
});
logger.info(
  {
    url: server.url,
    storage: config.storageUrl,
    maxFileBytes: options.maxFileBytes,
    endpointQuotaBytes: options.endpointQuotaBytes,
    allowedPaths: options.allowedPaths.patterns,
  },
  "epufs serving",
);
shutdownOnSignal(server, logger);
