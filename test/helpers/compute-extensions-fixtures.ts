import { createHash } from "node:crypto";
import { chmod, cp, mkdir, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { create } from "@bufbuild/protobuf";
import { createClient, type Client } from "@connectrpc/connect";
import { execa } from "execa";
import { pino } from "pino";
import * as tar from "tar-stream";
import {
  ExtensionStoreService,
  PublishExtensionRequestSchema,
  ReviewDecision,
  Visibility,
  type PublishExtensionRequest,
} from "../../gen/pgmesh/extensionstore/v1/extension_store_pb.js";
import { openBlobStore } from "../../src/blob/index.js";
import { parseComputeSpec, type RemoteExtensions } from "../../src/computectl/compute-spec.js";
import { bundleKey, ExtensionStore, extensionStoreRegistration } from "../../src/extstore/index.js";
import type { PgBinaries } from "../../src/pg/index.js";
import { createClientTransport, startServer, type ServerHandle } from "../../src/server/index.js";
import type { PgInstallDirs } from "../../src/computectl/extensions/index.js";
import { createTestKeys, type TestKeys } from "./test-keys.js";

const debianLib = "/usr/lib/postgresql/15/lib";
const debianShare = "/usr/share/postgresql/15";
const debianBin = "/usr/lib/postgresql/15/bin";

/** A bundle packed from Debian's contrib files of one extension. */
export interface PackedBundle {
  readonly name: string;
  readonly tar: Buffer;
  readonly sha256: string;
}

/** Packs share/extension/<name>.control, <name>--*.sql and lib/<name>.so (when there is one) from Debian's install. */
export async function packContribBundle(name: string): Promise<PackedBundle> {
  const scripts = (await readdir(path.join(debianShare, "extension"))).filter(
    (file) => file === `${name}.control` || (file.startsWith(`${name}--`) && file.endsWith(".sql")),
  );
  const files: [string, Buffer][] = [];
  for (const file of scripts.sort()) files.push([`share/extension/${file}`, await readFile(path.join(debianShare, "extension", file))]);
  const library = await readFile(path.join(debianLib, `${name}.so`)).catch(() => undefined);
  if (library !== undefined) files.push([`lib/${name}.so`, library]);
  const tarBytes = await packTar(files.map(([name, content]) => ({ name, content })));
  return { name, tar: tarBytes, sha256: createHash("sha256").update(tarBytes).digest("hex") };
}

export interface TarEntry {
  readonly name: string;
  readonly content?: Buffer | string;
  readonly type?: "file" | "directory" | "symlink";
  readonly linkname?: string;
}

/** Packs entries exactly as given (also unsafe ones, for the tests that must refuse them). */
export async function packTar(entries: readonly TarEntry[]): Promise<Buffer> {
  const pack = tar.pack();
  const collected = (async () => {
    const chunks: Buffer[] = [];
    for await (const chunk of pack) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  })();
  for (const entry of entries) {
    const type = entry.type ?? "file";
    if (type === "file") {
      const content = Buffer.from(entry.content ?? "");
      pack.entry({ name: entry.name, size: content.length, mode: 0o644 }, content);
    } else {
      pack.entry({ name: entry.name, type, mode: 0o755, ...(entry.linkname ? { linkname: entry.linkname } : {}) });
    }
  }
  pack.finalize();
  return collected;
}

/** Yields a buffer in chunks, as a download would. */
export async function* chunksOf(bytes: Buffer, size = 64 * 1024): AsyncGenerator<Uint8Array> {
  for (let offset = 0; offset < bytes.length; offset += size) yield bytes.subarray(offset, offset + size);
}

/** A copy of Debian's Postgres 15 (postgres, pg_config, lib/*.so, share/) in a temp root, without some extensions. */
export interface ScratchInstall {
  readonly root: string;
  readonly binaries: PgBinaries;
  readonly dirs: PgInstallDirs;
  remove(): Promise<void>;
}

/**
 * Copies the install into <root>/usr/…, the same relative layout, so the
 * copied postgres and pg_config find the copied share/ and lib/; the system
 * dirs are never written. `without` extensions lose their control, scripts
 * and library, so only a download can bring them.
 */
export async function createScratchInstall(without: readonly string[]): Promise<ScratchInstall> {
  const root = await mkdtemp(path.join(os.tmpdir(), "pgmesh-ext-install-"));
  await chmod(root, 0o755);
  const bin = path.join(root, debianBin);
  const lib = path.join(root, debianLib);
  const share = path.join(root, debianShare);
  await mkdir(bin, { recursive: true });
  for (const program of ["postgres", "pg_config"]) await cp(path.join(debianBin, program), path.join(bin, program));
  const excluded = (file: string) => without.some((name) => file === `${name}.so` || file === `${name}.control` || file.startsWith(`${name}--`));
  await cp(debianLib, lib, { recursive: true, filter: (source) => !source.includes("/bitcode") && !excluded(path.basename(source)) });
  await cp(debianShare, share, { recursive: true, filter: (source) => !excluded(path.basename(source)) });
  return {
    root,
    binaries: { major: 15, binDir: bin },
    dirs: { sharedir: share, pkglibdir: lib },
    remove: () => rm(root, { recursive: true, force: true }),
  };
}

/** Builds pgext/compute_hook with PGXS in a temp copy and installs it into the scratch install (make install DESTDIR). */
export async function buildComputeHookInto(install: ScratchInstall): Promise<void> {
  const build = await mkdtemp(path.join(os.tmpdir(), "pgmesh-hook-build-"));
  try {
    await cp(path.resolve("pgext/compute_hook"), build, { recursive: true, filter: (source) => !/\.(o|so|bc)$/.test(source) });
    await execa("make", ["-s", "-C", build, `PG_CONFIG=${debianBin}/pg_config`, "with_llvm=no", "install", `DESTDIR=${install.root}`]);
  } finally {
    await rm(build, { recursive: true, force: true });
  }
}

/** A real ExtensionStore on a file:// blob store, served on a free loopback port, with admin and control-plane clients. */
export interface TestExtensionStore {
  /** host:port; stays the same across pause() and resume(). */
  readonly addr: string;
  readonly blobDir: string;
  readonly keys: TestKeys;
  /** Publishes a bundle as a public extension and approves it. */
  publishApproved(bundle: PackedBundle): Promise<void>;
  /** ExportRemoteExtensions for the tenant, parsed by compute-ctl's spec parser. */
  remoteExtensions(tenantId: string): Promise<RemoteExtensions>;
  /** IssueDownloadToken for every bundle in `remote`. */
  downloadToken(tenantId: string, endpointId: string, remote: RemoteExtensions): Promise<string>;
  /** The path of a published bundle's bytes in the store's directory. */
  bundlePath(name: string, sha256: string): string;
  /** Stops serving (the port refuses connections); the data stays. */
  pause(): Promise<void>;
  /** Serves again on the same port. */
  resume(): Promise<void>;
  stop(): Promise<void>;
}

export async function startTestExtensionStore(port = 0): Promise<TestExtensionStore> {
  const keys = await createTestKeys();
  const blobDir = await mkdtemp(path.join(os.tmpdir(), "pgmesh-ext-store-"));
  const logger = pino({ level: "silent" });
  const store = new ExtensionStore({ blobs: await openBlobStore(`file://${blobDir}`), signingKey: keys.signingKey, logger });
  const serve = (on: number) =>
    startServer({ port: on, services: [extensionStoreRegistration(store)], auth: { verifier: keys.verifier }, logger });
  let server: ServerHandle | undefined = await serve(port);
  const { host, port: boundPort } = server.address;
  const baseUrl = server.url;
  const clientWith = async (scope: "admin" | "control_plane"): Promise<Client<typeof ExtensionStoreService>> => {
    const token = await keys.mint({ scope });
    return createClient(ExtensionStoreService, createClientTransport({ baseUrl, token }));
  };
  const admin = await clientWith("admin");
  const controlPlane = await clientWith("control_plane");
  return {
    addr: `${host}:${boundPort}`,
    blobDir,
    keys,
    async publishApproved(bundle) {
      async function* messages(): AsyncGenerator<PublishExtensionRequest> {
        yield create(PublishExtensionRequestSchema, {
          msg: { case: "header", value: { name: bundle.name, pgMajors: [15], license: "PostgreSQL", visibility: Visibility.PUBLIC } },
        });
        yield create(PublishExtensionRequestSchema, { msg: { case: "chunk", value: bundle.tar } });
      }
      await admin.publishExtension(messages());
      await admin.reviewExtension({ name: bundle.name, sha256: bundle.sha256, decision: ReviewDecision.APPROVE });
    },
    async remoteExtensions(tenantId) {
      const { remoteExtensionsJson } = await controlPlane.exportRemoteExtensions({ tenantId, pgMajor: 15 });
      const spec = parseComputeSpec({
        format_version: 1.0,
        cluster: { roles: [], databases: [] },
        remote_extensions: JSON.parse(remoteExtensionsJson),
      });
      return spec.remoteExtensions!;
    },
    async downloadToken(tenantId, endpointId, remote) {
      const sha256 = Object.values(remote.extensionData).map((data) => data.sha256);
      return (await controlPlane.issueDownloadToken({ tenantId, endpointId, sha256 })).token;
    },
    bundlePath(name, sha256) {
      return path.join(blobDir, "objects", bundleKey(name, sha256));
    },
    async pause() {
      await server?.close();
      server = undefined;
    },
    async resume() {
      server = await serve(boundPort);
    },
    async stop() {
      await server?.close();
      await keys.remove();
      await rm(blobDir, { recursive: true, force: true });
    },
  };
}
