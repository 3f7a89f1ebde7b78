#!/usr/bin/env node
import { readFile } from "node:fs/promises";
import path from "node:path";
import { blobStoreOptionsFromEnv } from "../src/blob/index.js";
import { defaultPgBinaries, parseComputeSpecJson, RemoteExtensionLoader, runComputeCtl } from "../src/computectl/index.js";
import { defineFlags, logLevelNames, parseCommandLine, parseListen, parseS3ConditionalWrites, serviceFlags, UsageError, type LogLevelName } from "../src/config/index.js";
import { createLogger, loadServerAuth, shutdownOnSignal } from "../src/server/index.js";

const { storage: _storage, ...shared } = serviceFlags("compute-ctl");
const flags = defineFlags({
  pgdata: { type: "string", short: "D", valueName: "DIR", help: "PGDATA of the compute; wiped and laid down afresh on every start; required" },
  spec: { type: "string", short: "S", valueName: "FILE", help: "compute spec JSON to start with; without it the compute waits for Configure (configuration_pending)" },
  connstr: { type: "string", short: "C", valueName: "URI", help: "maintenance connection, e.g. postgresql://cloud_admin@127.0.0.1:55432/postgres (default: cloud_admin on the Postgres port)" },
  pgbin: { type: "string", short: "b", valueName: "PATH", help: "the postgres binary; initdb is taken from its directory (default: the bundle's .pgmesh/bundle/v15/bin/postgres if built, else /usr/lib/postgresql/15/bin/postgres)" },
  "pg-port": { type: "number", valueName: "PORT", help: "Postgres port when the spec names none (default: the connstr's, else a free one)" },
  "pg-listen": { type: "string", valueName: "ADDRS", default: "127.0.0.1", help: "Postgres listen_addresses" },
  "no-extensions": { type: "boolean", help: "run without the compute hook and remote extensions (for a Postgres install without pgmesh_compute_hook in its pkglibdir)" },
  "extension-timeout-ms": { type: "number", default: 30000, help: "how long CREATE EXTENSION / LOAD wait for an extension's files" },
  "compute-id": { type: "string", short: "i", valueName: "ID", help: "names this compute in a timeline's generation claims (default: host name and process id)" },
  "rpo-ms": { type: "number", default: 1000, help: "timeline source: the most committed work a crash may lose; WAL is shipped every rpo/4 ms" },
  "snapshot-wal-bytes": { type: "number", default: 268435456, help: "timeline source: WAL shipped since the last snapshot that starts an online snapshot in the background" },
  "max-unshipped-wal-bytes": { type: "number", default: 1073741824, help: "timeline source: WAL not yet in the store (it is down) past which new transactions are read-only until shipping catches up" },
  ...shared,
});

const program = {
  name: "compute-ctl",
  description: [
    "Starts and supervises one Postgres compute from a JSON spec (Neon's ComputeSpec shape plus a pgmesh object):",
    "fresh PGDATA (initdb template or blob-storage snapshot), the endpoint's saved files from Epufs, extensions,",
    "postgresql.conf, Postgres as the unprivileged user, roles and databases; then reports running.",
    "Serves ComputeCtl (gRPC, gRPC-Web, Connect), GET /metrics and the compute hook's /extension_server/<name>.",
    "SIGTERM terminates the compute (fast shutdown, files saved to Epufs) and exits 0.",
  ].join("\n"),
};

async function main(): Promise<void> {
  const { values } = parseCommandLine(program, flags, {
    validate: (parsed) => {
      const v = parsed.values;
      if (!v.pgdata) throw new UsageError("--pgdata (-D) is required (or PGMESH_PGDATA)");
      if (!v.authKeys && !v.insecureNoAuth) throw new UsageError("give --auth-keys FILE to verify bearer tokens, or --insecure-no-auth for development");
      if (v.authKeys && v.insecureNoAuth) throw new UsageError("--auth-keys and --insecure-no-auth exclude each other; give one");
      if (!(logLevelNames as readonly string[]).includes(v.logLevel)) throw new UsageError(`--log-level must be one of ${logLevelNames.join(", ")}`);
      parseListen(v.listen);
      parseS3ConditionalWrites(v.s3ConditionalWrites);
      return parsed;
    },
  });
  const logger = createLogger({ service: "compute-ctl", level: values.logLevel as LogLevelName });
  const spec = values.spec ? parseComputeSpecJson(await readFile(values.spec, "utf8")) : undefined;
  const binaries = await defaultPgBinaries(values.pgbin);
  const handle = await runComputeCtl({
    pgdata: path.resolve(values.pgdata!),
    binaries,
    ...(values.noExtensions ? {} : { extensions: new RemoteExtensionLoader({ binaries, logger, extensionTimeoutMs: values.extensionTimeoutMs }) }),
    ...(spec ? { spec } : {}),
    ...(values.connstr ? { connstr: values.connstr } : {}),
    ...(values.pgPort !== undefined ? { pgPort: values.pgPort } : {}),
    pgListenAddresses: values.pgListen,
    ...(values.computeId ? { computeId: values.computeId } : {}),
    rpoMs: values.rpoMs,
    snapshotWalBytes: values.snapshotWalBytes,
    maxUnshippedWalBytes: values.maxUnshippedWalBytes,
    blobStoreOptions: { ...blobStoreOptionsFromEnv(process.env), s3ConditionalWrites: parseS3ConditionalWrites(values.s3ConditionalWrites) },
    ...parseListen(values.listen),
    auth: await loadServerAuth({ authKeysPath: values.authKeys, insecureNoAuth: values.insecureNoAuth }, logger),
    logger,
  });
  // SIGTERM/SIGINT: terminate the compute (files saved to Epufs), stop serving, exit 0.
  shutdownOnSignal(handle, logger);
}

main().catch((err: unknown) => {
  process.stderr.write(`compute-ctl: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
