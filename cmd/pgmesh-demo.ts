#!/usr/bin/env node
import path from "node:path";
import { defineFlags, parseCommandLine, UsageError } from "../src/config/index.js";
import { describeStartup, runDemo } from "../src/demo/index.js";
import { createLogger } from "../src/server/index.js";

const flags = defineFlags({
  dir: { type: "string", valueName: "DIR", default: ".pgmesh", help: "Embedded-defaults root: dev keys, local storage, the bundle, downloaded .debs, demo logs" },
  bundle: { type: "string", valueName: "DIR", help: "The Postgres bundle (default <dir>/bundle; scripts/setup.sh builds it)" },
  host: { type: "string", default: "127.0.0.1", help: "Loopback address every service listens on" },
  ports: { type: "list", default: ["7101", "7102", "7103", "7104"], valueName: "ES,EPUFS,CTL,WALREDO", help: "Ports of extension-store, epufs, compute-ctl and walredo" },
  "pg-port": { type: "number", default: 55432, help: "Port of the compute's Postgres" },
  "exit-after-start": { type: "boolean", help: "Stop everything once the compute is running (for tests); default: run until Ctrl-C" },
});

const program = {
  name: "pgmesh-demo",
  description: [
    "The main job: starts extension-store, epufs, walredo and compute-ctl on embedded defaults (local directories,",
    "generated dev keys), publishes hypopg and a few contrib extensions, starts a compute from a demo spec, and",
    "prints the psql connection string and the start-up phase timings. Ctrl-C stops everything cleanly; the",
    "compute's data lives on a timeline in <dir>/timelines, so a rerun has the tables you created.",
  ].join("\n"),
};

const values = parseCommandLine(program, flags, {
  validate: ({ values }) => {
    const ports = values.ports.map(Number);
    if (ports.length !== 4 || ports.some((p) => !Number.isInteger(p) || p < 1 || p > 65535)) {
      throw new UsageError("--ports takes four ports: extension-store,epufs,compute-ctl,walredo");
    }
    return { ...values, portNumbers: ports as [number, number, number, number] };
  },
});

const logger = createLogger({ service: "pgmesh-demo", level: "info" });
const pgmeshDir = path.resolve(values.dir);
const [extensionStore, epufs, computeCtl, walredo] = values.portNumbers;
const demo = await runDemo({
  pgmeshDir,
  bundleDir: path.resolve(values.bundle ?? path.join(pgmeshDir, "bundle")),
  host: values.host,
  ports: { extensionStore, epufs, computeCtl, walredo },
  pgPort: values.pgPort,
  logger,
}).catch((err: unknown) => {
  process.stderr.write(`pgmesh-demo: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});

process.stdout.write([
  "",
  "pgmesh is up: extension-store, epufs, walredo and compute-ctl, each its own process.",
  `  connect:    psql '${demo.connectionUri}'`,
  `  try:        CREATE EXTENSION hstore;   -- fetched from the extension store on demand`,
  `  superuser:  psql '${demo.superuserUri}'   -- CREATE EXTENSION hypopg (not a trusted extension)`,
  `  services:   ${demo.processes.map((p) => `${p.name} ${p.options.url}`).join(", ")}`,
  `  list them:  npx buf curl --http2-prior-knowledge --list-methods ${demo.processes[0]?.options.url}`,
  `  keys:       ${path.join(pgmeshDir, "keys")} (mint tokens with node dist/cmd/pgmesh-token.js)`,
  `  data:       ${path.join(pgmeshDir, "timelines")} (a timeline: tables outlive Ctrl-C; delete it to start afresh)`,
  `  logs:       ${path.join(pgmeshDir, "demo", "logs")}`,
  "start-up phases:",
  describeStartup(demo.status),
  values.exitAfterStart ? "stopping (--exit-after-start)" : "Ctrl-C stops everything.",
  "",
].join("\n"));

let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  demo.stop().then(() => process.exit(0), (err: unknown) => {
    logger.error({ err }, "stopping failed");
    process.exit(1);
  });
};
if (values.exitAfterStart) stop();
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
