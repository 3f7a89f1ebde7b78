#!/usr/bin/env node
import { blobStoreOptionsFromEnv, openBlobStore } from "../src/blob/index.js";
import {
  compileServiceConfig,
  defineFlags,
  exitUnlessWritableDirs,
  parseCommandLine,
  parseDurationSec,
  serviceFlags,
  storageDirs,
  UsageError,
} from "../src/config/index.js";
import { createLogger, loadServerAuth, serviceOf, shutdownOnSignal, startServer } from "../src/server/index.js";
import { compileTimelineCtlOptions, createTimelineHandlers, TimelineCtl, TimelineCtlOptionsError } from "../src/timelinectl/index.js";
import { TimelineService } from "../gen/pgmesh/timeline/v1/timeline_pb.js";

const flags = defineFlags({
  ...serviceFlags("timeline-service"),
  "pitr-retention": {
    type: "string",
    valueName: "DURATION",
    default: "7d",
    help: "CollectGarbage keeps point-in-time starts this far back unless the request says otherwise",
  },
  "file-chunk-grace": {
    type: "string",
    valueName: "DURATION",
    default: "1h",
    help: "CollectGarbage keeps file chunks no snapshot names while younger than this (a snapshot being taken names them last)",
  },
});

const program = {
  name: "timeline-service",
  description: [
    "Serves pgmesh.timeline.v1.TimelineService over gRPC, gRPC-Web and Connect: list a tenant's timelines,",
    "branch one at an LSN or a time, delete one, and garbage-collect WAL, snapshots and file chunks, in the",
    "store compute-ctl keeps timelines in (--storage). Every call needs a control_plane token.",
    "SIGTERM drains in-flight calls and exits 0.",
  ].join("\n"),
};

const { config, options } = parseCommandLine(program, flags, {
  validate: ({ values }) => {
    const config = compileServiceConfig(values);
    try {
      const options = compileTimelineCtlOptions({
        pitrRetentionMs: parseDurationSec(values.pitrRetention, "--pitr-retention") * 1000,
        fileChunkGraceMs: parseDurationSec(values.fileChunkGrace, "--file-chunk-grace") * 1000,
      });
      return { config, options };
    } catch (err) {
      if (err instanceof TimelineCtlOptionsError) throw new UsageError(err.message);
      throw err;
    }
  },
});

await exitUnlessWritableDirs(program, storageDirs(config));
const logger = createLogger({ service: "timeline-service", level: config.logLevel });
const store = await openBlobStore(config.storageUrl, blobStoreOptionsFromEnv(process.env));
const auth = await loadServerAuth(config, logger);
const server = await startServer({
  host: config.host,
  port: config.port,
  auth,
  logger,
  services: [serviceOf({ service: TimelineService, impl: createTimelineHandlers(new TimelineCtl(store, options)) })],
});
logger.info({ url: server.url, storage: config.storageUrl, ...options }, "timeline-service serving");
shutdownOnSignal(server, logger);
