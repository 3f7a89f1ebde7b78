#!/usr/bin/env node
import { existsSync } from "node:fs";
import path from "node:path";
import { WalRedoService } from "../gen/pgmesh/walredo/v1/walredo_pb.js";
import { compileServerConfig, defineFlags, exitUnlessWritableDirs, parseCommandLine, serverFlags, UsageError } from "../src/config/index.js";
import { createLogger, loadServerAuth, serviceOf, startServer } from "../src/server/index.js";
import { compileWalRedoOptions, createWalRedoService, processPoolMetrics, RedoProcessPool, WalRedoOptionsError } from "../src/walredo/index.js";

const flags = defineFlags({
  ...serverFlags("walredo"),
  bundle: { type: "string", valueName: "DIR", default: path.resolve(".pgmesh/bundle"), help: "Postgres bundle (`bundle --out DIR`) whose postgres runs the walredo processes and whose initdb serves Initdb" },
  "no-bundle": { type: "boolean", help: "No bundle: Initdb runs the system's initdb (/usr/lib/postgresql/<major>/bin); Redo and Ping answer UNAVAILABLE" },
  "idle-timeout-ms": { type: "number", default: 180_000, help: "Kill a walredo process idle this long" },
  "request-timeout-ms": { type: "number", default: 60_000, help: "Kill a walredo process that has not answered a request after this long; the request is retried once" },
  "max-processes": { type: "number", default: 32, help: "Walredo processes over all tenants, counted from spawn until exit; a tenant that needs one more at the cap has an idle process evicted and waits for its exit" },
  "queue-timeout-ms": { type: "number", default: 10_000, help: "At --max-processes, how long a request waits for a process to exit before RESOURCE_EXHAUSTED" },
  "max-processes-per-tenant": { type: "number", default: 4, help: "Walredo processes of one tenant (a new one starts when each has 8 requests in flight)" },
  user: { type: "string", default: "postgres", help: "Unprivileged account the processes run as (when started as root)" },
  "no-chroot": { type: "boolean", help: "Do not chroot the processes into the bundle (default: chroot when running as root)" },
  "scratch-root": { type: "string", valueName: "DIR", help: "Host directory for per-process scratch clusters and Initdb's temporary PGDATA (default: the system temp dir)" },
});

const program = {
  name: "walredo",
  description: [
    "Serves pgmesh.walredo.v1.WalRedoService: rebuilds pages from a base image plus WAL records through a pool of",
    "sandboxed PostgreSQL processes (one set per tenant, never shared), and runs initdb streaming the cluster as tar.",
    "Callers need a control_plane or admin token. SIGTERM drains in-flight calls, kills every process and exits 0.",
  ].join("\n"),
};

const parsed = parseCommandLine(program, flags, {
  validate: ({ values }) => {
    const config = compileServerConfig(values);
    if (!values.noBundle && !existsSync(path.join(values.bundle, "launcher"))) {
      throw new UsageError(`no Postgres bundle at ${path.resolve(values.bundle)}: build one with \`bundle --out ${values.bundle}\`, or pass --no-bundle (Initdb only)`);
    }
    try {
      const logger = createLogger({ service: "walredo", level: config.logLevel });
      const options = compileWalRedoOptions({
        logger,
        bundleDir: values.noBundle ? undefined : path.resolve(values.bundle),
        idleTimeoutMs: values.idleTimeoutMs,
        requestTimeoutMs: values.requestTimeoutMs,
        maxProcesses: values.maxProcesses,
        queueTimeoutMs: values.queueTimeoutMs,
        maxProcessesPerTenant: values.maxProcessesPerTenant,
        user: values.user,
        ...(values.noChroot ? { chroot: false } : {}),
        ...(values.scratchRoot ? { scratchRoot: path.resolve(values.scratchRoot) } : {}),
      });
      return { config, options };
    } catch (err) {
      if (err instanceof WalRedoOptionsError) throw new UsageError(err.message);
      throw err;
    }
  },
});

const { config, options } = parsed;
await exitUnlessWritableDirs(program, options.scratchRoot === undefined ? [] : [{ dir: options.scratchRoot, flag: "--scratch-root" }]);
const { logger } = options;
const pool = new RedoProcessPool(options);
const server = await startServer({
  host: config.host,
  port: config.port,
  auth: await loadServerAuth(config, logger),
  logger,
  services: [serviceOf({ service: WalRedoService, impl: createWalRedoService(options, pool) })],
  readMaxBytes: 256 * 1024 * 1024,
  metrics: processPoolMetrics(pool),
});
logger.info({ url: server.url, bundle: options.bundleDir ?? "(system binaries, redo unavailable)", maxProcesses: options.maxProcesses }, "walredo serving");

let stopping = false;
for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.on(signal, () => {
    if (stopping) process.exit(1);
    stopping = true;
    logger.info({ signal }, "draining calls, then killing every walredo process");
    server.close()
      .then(() => pool.close())
      .then(() => process.exit(0), (err: unknown) => {
        logger.error({ err }, "shutdown failed");
        process.exit(1);
      });
  });
}
