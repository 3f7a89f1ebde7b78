#!/usr/bin/env node
import { createClient } from "@connectrpc/connect";
import { ExtensionStoreService } from "../gen/pgmesh/extensionstore/v1/extension_store_pb.js";
import { KeyFileError, loadVerifyKeySet } from "../src/auth/index.js";
import { blobStoreOptionsFromEnv, openBlobStore, removeOrphanedSpoolFiles } from "../src/blob/index.js";
import {
  compileServiceConfig,
  defineFlags,
  exitUnlessWritableDirs,
  parseCommandLine,
  parseListen,
  serviceFlags,
  storageDirs,
  UsageError,
} from "../src/config/index.js";
import {
  BundleCache,
  bundleCacheMetrics,
  bundleCacheRegistration,
  compileExtensionStoreOptions,
  DownloadSigningKeyError,
  createNeonExtensionRoute,
  ExtensionStore,
  extensionStoreRegistration,
  ExtensionStoreOptionsError,
  resolveDownloadKeySet,
} from "../src/extstore/index.js";
import { createClientTransport, createLogger, loadServerAuth, shutdownOnSignal, startServer, type ServerOptions } from "../src/server/index.js";
import { resolve } from "node:path";

const flags = defineFlags({
  ...serviceFlags("extension-store"),
  "signing-key": {
    type: "string",
    valueName: "FILE",
    help: "Keys of download tokens, the same file on every replica: a PKCS#8 PEM Ed25519 key, or a key set (JWKS JSON or concatenated PEM keys) whose last private key signs and all of whose keys verify, for rotation (default with file:// storage: <dir>/download-keys/signing-key.pem, generated if absent; required with s3://)",
  },
  "spool-dir": { type: "string", valueName: "DIR", help: "Where publishes are spooled and validated before they are stored (default: the OS temp dir)" },
  "max-bundle-bytes": { type: "number", default: 1024 * 1024 * 1024, help: "Largest bundle PublishExtension accepts, in bytes" },
  "max-file-bytes": { type: "number", default: 512 * 1024 * 1024, help: "Largest file inside a bundle, in bytes" },
  "download-token-ttl": { type: "number", default: 300, help: "Lifetime of a download token when the request gives none, in seconds" },
  "max-download-token-ttl": { type: "number", default: 3600, help: "Longest download token lifetime, in seconds" },
  upstream: {
    type: "string",
    valueName: "HOST:PORT",
    help: "Run as a node-local cache of this extension store: serve DownloadBundle from --cache-dir, fetch misses from upstream",
  },
  "cache-dir": { type: "string", valueName: "DIR", default: resolve(".pgmesh", "extension-store-cache"), help: "Cache mode: where bundles are kept" },
  "cache-bytes": { type: "number", default: 10 * 1024 * 1024 * 1024, help: "Cache mode: most bytes kept; least recently used bundles are evicted" },
  "download-keys": {
    type: "string",
    valueName: "FILE",
    help: "Cache mode: the upstream store's public download-token key (JWKS or PEM), to check tokens locally",
  },
});

const program = {
  name: "extension-store",
  description: [
    "Serves pgmesh.extensionstore.v1.ExtensionStoreService: a content-addressed store of Postgres extension",
    "bundles (publish, review, catalog, grants, compute indexes, download tokens, streaming downloads) over",
    "gRPC, gRPC-Web and Connect. Admin tokens publish and review; control_plane tokens grant, index and issue",
    "download tokens; DownloadBundle needs only a download token. With --upstream it is a node-local cache",
    "that serves DownloadBundle only (other methods answer UNIMPLEMENTED). SIGTERM drains and exits 0.",
  ].join("\n"),
};

const { config, values } = parseCommandLine(program, flags, {
  validate: ({ values }) => {
    const config = compileServiceConfig(values);
    if (values.upstream !== undefined) {
      parseListen(values.upstream);
      if (values.downloadKeys === undefined) {
        throw new UsageError("--upstream needs --download-keys FILE: the upstream store's public download-token key");
      }
    }
    return { config, values };
  },
});

await exitUnlessWritableDirs(
  program,
  values.upstream !== undefined
    ? [{ dir: values.cacheDir, flag: "--cache-dir", create: true }]
    : [
        ...storageDirs(config),
        ...(values.spoolDir !== undefined ? [{ dir: values.spoolDir, flag: "--spool-dir" }] : []),
      ],
);

const logger = createLogger({ service: "extension-store", level: config.logLevel });
const auth = await loadServerAuth(config, logger);
let registration;
/** Neon's gateway layout (GET /<build_tag>/<arch>/v<NN>/extensions/<name>.tar.zst), for a store of its own only. */
let neonRoute: Pick<ServerOptions, "fallback"> = {};
let metrics;
if (values.upstream !== undefined) {
  const upstreamUrl = `http://${values.upstream}`;
  const cache = await BundleCache.open({
    dir: values.cacheDir,
    maxBytes: values.cacheBytes,
    upstream: createClient(ExtensionStoreService, createClientTransport({ baseUrl: upstreamUrl })),
    verifyKeys: (await loadVerifyKeySet(values.downloadKeys!)).keys,
    logger,
  });
  registration = bundleCacheRegistration(cache, values.upstream);
  metrics = bundleCacheMetrics(cache);
  logger.info({ upstream: values.upstream, cacheDir: values.cacheDir, cacheBytes: values.cacheBytes, ...cache.stats() }, "cache mode");
} else {
  try {
    const { signingKey, verifyKeys } = await resolveDownloadKeySet({
      signingKeyPath: values.signingKey,
      storageUrl: config.storageUrl,
      logger,
    });
    const blobs = await openBlobStore(config.storageUrl, {
      ...blobStoreOptionsFromEnv(process.env),
      s3ConditionalWrites: config.s3ConditionalWrites,
    });
    const options = {
      blobs,
      signingKey,
      verifyKeys,
      logger,
      maxBundleBytes: values.maxBundleBytes,
      maxFileBytes: values.maxFileBytes,
      defaultDownloadTokenTtlSec: values.downloadTokenTtl,
      maxDownloadTokenTtlSec: values.maxDownloadTokenTtl,
      ...(values.spoolDir !== undefined ? { spoolDir: values.spoolDir } : {}),
    };
    // Publishes a killed predecessor left half-spooled.
    await removeOrphanedSpoolFiles(compileExtensionStoreOptions(options).spoolDir);
    const store = new ExtensionStore(options);
    registration = extensionStoreRegistration(store);
    neonRoute = { fallback: createNeonExtensionRoute(store) };
  } catch (error) {
    if (error instanceof DownloadSigningKeyError || error instanceof ExtensionStoreOptionsError || error instanceof KeyFileError) {
      process.stderr.write(`extension-store: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
}
const server = await startServer({ host: config.host, port: config.port, auth, logger, services: [registration], ...neonRoute, ...(metrics ? { metrics } : {}) });
logger.info({ url: server.url, storage: values.upstream === undefined ? config.storageUrl : undefined }, "extension-store serving");
shutdownOnSignal(server, logger);
