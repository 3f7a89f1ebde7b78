#!/usr/bin/env node
import { resolve } from "node:path";
import { ConnectError, createClient } from "@connectrpc/connect";
import { ExtensionStoreService, ReviewState, Visibility } from "../gen/pgmesh/extensionstore/v1/extension_store_pb.js";
import { defineFlags, parseCommandLine, parseListen, UsageError } from "../src/config/index.js";
import {
  BundleRejectedError,
  packExtension,
  PackError,
  packSourceFromDeb,
  packSourceFromPgConfig,
  publishBundleFile,
} from "../src/extstore/index.js";
import { createClientTransport } from "../src/server/index.js";

const flags = defineFlags({
  deb: { type: "string", valueName: "FILE.deb", help: "Pack the extension a Debian package ships (unpacked with dpkg-deb -x)" },
  "from-pg-config": { type: "string", valueName: "NAME", help: "Pack extension NAME as installed in the Postgres that pg_config describes" },
  "pg-config": { type: "string", valueName: "PATH", default: "pg_config", help: "The pg_config of that Postgres" },
  "pg-major": { type: "number", default: 15, help: "Postgres major version the files are for" },
  name: { type: "string", valueName: "NAME", help: "Extension name, when a package ships several" },
  out: { type: "string", valueName: "FILE.tar", help: "Where to write the bundle (default ./<name>-<version>.tar)" },
  publish: { type: "string", valueName: "HOST:PORT", help: "Also publish the bundle to this extension store" },
  token: { type: "string", valueName: "JWT", help: "Admin bearer token for --publish" },
  private: { type: "boolean", help: "Publish as private (only granted tenants); default public" },
  license: { type: "string", default: "", help: "License to record, e.g. PostgreSQL" },
  version: { type: "string", valueName: "LABEL", help: "Version label to record (default: the control file's default_version)" },
  description: { type: "string", default: "", help: "Free text to record" },
  "needs-shared-preload": { type: "boolean", help: "The library must be in shared_preload_libraries" },
  "needs-session-preload": { type: "boolean", help: "The library must be in session_preload_libraries" },
});

const program = {
  name: "pgmesh-pack-extension",
  description: [
    "Turns a Debian package (--deb) or an installed extension (--from-pg-config NAME) into an extension bundle:",
    "a deterministic tar of lib/*.so, share/extension/* and share/<folder>/* (same input, same sha256).",
    "With --publish HOST:PORT --token JWT it also publishes it (pending review). Prints a JSON summary.",
  ].join("\n"),
};

const values = parseCommandLine(program, flags, {
  validate: ({ values }) => {
    if ((values.deb === undefined) === (values.fromPgConfig === undefined)) {
      throw new UsageError("give exactly one of --deb FILE.deb or --from-pg-config NAME");
    }
    if (values.publish !== undefined) {
      parseListen(values.publish);
      if (values.token === undefined) throw new UsageError("--publish needs --token JWT (an admin token)");
    }
    return values;
  },
});

try {
  const source =
    values.deb !== undefined
      ? await packSourceFromDeb(values.deb, values.pgMajor, values.name)
      : await packSourceFromPgConfig(values.fromPgConfig!, values.pgConfig);
  const out = resolve(values.out ?? `${source.name}-${source.version || "bundle"}.tar`);
  const bundle = await packExtension(source, out);
  let published;
  if (values.publish !== undefined) {
    const client = createClient(
      ExtensionStoreService,
      createClientTransport({ baseUrl: `http://${values.publish}`, token: values.token! }),
    );
    const response = await publishBundleFile(client, bundle, {
      pgMajors: [values.pgMajor],
      visibility: values.private ? Visibility.PRIVATE : Visibility.PUBLIC,
      license: values.license,
      description: values.description,
      needsSharedPreload: values.needsSharedPreload,
      needsSessionPreload: values.needsSessionPreload,
      ...(values.version !== undefined ? { version: values.version } : {}),
    });
    published = { alreadyExisted: response.alreadyExisted, reviewState: ReviewState[response.extension?.reviewState ?? 0] };
  }
  process.stdout.write(JSON.stringify({ ...bundle, ...(published ? { published } : {}) }) + "\n");
} catch (error) {
  if (error instanceof PackError || error instanceof BundleRejectedError) {
    process.stderr.write(`pgmesh-pack-extension: ${error.message}\n`);
    process.exit(1);
  }
  if (error instanceof ConnectError) {
    // The store refused or could not be reached: its answer, not a stack trace.
    process.stderr.write(`pgmesh-pack-extension: publishing to the extension store at ${values.publish} failed: ${error.message}\n`);
    process.exit(1);
  }
  throw error;
}
