import { createHash } from "node:crypto";
import { chmod, cp, mkdir, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { execa } from "execa";
import { pino } from "pino";
import * as tar from "tar-stream";
import { ReviewDecision } from "../../gen/pgmesh/extensionstore/v1/extension_store_pb.js";
import { parseComputeSpec, type RemoteExtensions } from "../../src/computectl/compute-spec.js";
import { bundleKey, extensionStoreRegistration } from "../../src/extstore/index.js";
import type { PgBinaries } from "../../src/pg/index.js";
import { startServer, type ServerHandle } from "../../src/server/index.js";
import type { PgInstallDirs } from "../../src/computectl/extensions/index.js";
import { publicHeader, publishRequests, startExtStoreHarness, type ExtStoreHarness } from "../fixtures/extstore/extstore-harness.js";

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
    await cp(path.resolve(import.meta.dirname, "../../pgext/compute_hook"), build, { recursive: true, filter: (source) => !/\.(o|so|bc)$/.test(source) });
    await execa("make", ["-s", "-C", build, `PG_CONFIG=${debianBin}/pg_config`, "with_llvm=no", "install", `DESTDIR=${install.root}`]);
  } finally {
    await rm(build, { recursive: true, force: true });
  }
}

/** The extstore harness (a real ExtensionStore on a local directory) with what compute-ctl's tests need. */
export interface TestExtensionStore {
  readonly harness: ExtStoreHarness;
  /** host:port of the harness's server. */
  readonly addr: string;
  /** Publishes a bundle as a public extension and approves it. */
  publishApproved(bundle: PackedBundle): Promise<void>;
  /** ExportRemoteExtensions for the tenant, parsed by compute-ctl's spec parser. */
  remoteExtensions(tenantId: string): Promise<RemoteExtensions>;
  /** IssueDownloadToken for every bundle in `remote`. */
  downloadToken(tenantId: string, endpointId: string, remote: RemoteExtensions): Promise<string>;
  /** Replaces a published bundle's stored bytes (to serve corrupted ones); returns the original bytes. */
  replaceBundleBytes(name: string, sha256: string, bytes: Buffer): Promise<Buffer>;
  /** Serves the same store on another port too (a store that comes up later on a known address). */
  serveOn(port: number): Promise<ServerHandle>;
  stop(): Promise<void>;
}

export async function startTestExtensionStore(): Promise<TestExtensionStore> {
  const harness = await startExtStoreHarness("local");
  const { admin, controlPlane } = harness;
  return {
    harness,
    addr: `${harness.server.address.host}:${harness.server.address.port}`,
    async publishApproved(bundle) {
      await admin.publishExtension(publishRequests(publicHeader(bundle.name), bundle.tar));
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
    async replaceBundleBytes(name, sha256, bytes) {
      const key = bundleKey(name, sha256);
      const original: Buffer[] = [];
      for await (const chunk of (await harness.blobs.get(key)).body) original.push(Buffer.from(chunk));
      await harness.blobs.put(key, chunksOf(bytes));
      return Buffer.concat(original);
    },
    serveOn(port) {
      return startServer({
        port,
        services: [extensionStoreRegistration(harness.store)],
        auth: { verifier: harness.keys.verifier },
        logger: pino({ level: "silent" }),
      });
    },
    stop: () => harness.stop(),
  };
}
