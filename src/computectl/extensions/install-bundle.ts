import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, mkdtemp, open, rename, rm } from "node:fs/promises";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import * as tar from "tar-stream";
import { BundleRejectedError, classifyBundleEntry } from "../../extstore/index.js";
import { BundleChecksumError, UnsafeBundleError } from "./extension-errors.js";
import type { PgInstallDirs } from "./install-layout.js";
import { quoteInput } from "../../errors/index.js";

export interface InstallBundleOptions {
  readonly extension: string;
  /** The sha256 (hex) the bytes must have. */
  readonly sha256: string;
  readonly dirs: PgInstallDirs;
  readonly maxBundleBytes: number;
  readonly signal?: AbortSignal;
}

export interface InstalledBundle {
  /** Size of the tar in bytes. */
  readonly bytes: number;
  /** Absolute paths of the files placed, in the order they appeared. */
  readonly files: readonly string[];
}

interface StagedFile {
  readonly staged: string;
  readonly target: string;
  /** Libraries first, then scripts and data, control files last. */
  readonly order: 0 | 1 | 2;
}

/**
 * Installs a bundle (a tar of lib/… and share/… files) into a Postgres
 * install. The bytes are spooled to disk while their sha256 is computed and
 * checked before anything is extracted; every entry is re-validated with the
 * ExtensionStore's bundle rules (regular files and directories only, no path
 * escaping, only lib/ and share/); the files are extracted into staging
 * directories on the same file systems as their targets, then each is renamed
 * into place: libraries, then scripts, then control files. On any failure
 * nothing has been placed and the staging directories are gone.
 */
export async function installBundle(chunks: AsyncIterable<Uint8Array>, options: InstallBundleOptions): Promise<InstalledBundle> {
  const shareStaging = await mkdtemp(path.join(options.dirs.sharedir, ".pgmesh-staging-"));
  let libStaging: string | undefined;
  try {
    const spool = path.join(shareStaging, "bundle.tar");
    const bytes = await spoolVerified(chunks, spool, options);
    libStaging = await mkdtemp(path.join(options.dirs.pkglibdir, ".pgmesh-staging-"));
    const staged = await extractToStaging(spool, { share: path.join(shareStaging, "tree"), lib: libStaging }, options);
    return { bytes, files: await placeFiles(staged) };
  } finally {
    await rm(shareStaging, { recursive: true, force: true });
    if (libStaging !== undefined) await rm(libStaging, { recursive: true, force: true });
  }
}

async function spoolVerified(chunks: AsyncIterable<Uint8Array>, spool: string, options: InstallBundleOptions): Promise<number> {
  const file = await open(spool, "wx", 0o600);
  const hash = createHash("sha256");
  let bytes = 0;
  try {
    for await (const chunk of chunks) {
      options.signal?.throwIfAborted();
      bytes += chunk.byteLength;
      if (bytes > options.maxBundleBytes) {
        throw new UnsafeBundleError(options.extension, options.sha256, `it is larger than ${options.maxBundleBytes} bytes, the limit (maxBundleBytes)`);
      }
      hash.update(chunk);
      await file.write(chunk);
    }
  } finally {
    await file.close();
  }
  const actual = hash.digest("hex");
  if (actual !== options.sha256) throw new BundleChecksumError(options.extension, options.sha256, actual);
  return bytes;
}

async function extractToStaging(
  spool: string,
  staging: { readonly share: string; readonly lib: string },
  options: InstallBundleOptions,
): Promise<StagedFile[]> {
  const unsafe = (reason: string) => new UnsafeBundleError(options.extension, options.sha256, reason);
  const extract = tar.extract();
  const input = createReadStream(spool);
  input.on("error", (error) => extract.destroy(error));
  input.pipe(extract);
  const staged: StagedFile[] = [];
  const seen = new Set<string>();
  try {
    for await (const entry of extract) {
      options.signal?.throwIfAborted();
      const { name, type } = entry.header;
      if (type !== "file" && type !== "directory") {
        throw unsafe(`entry ${quoteInput(name)} is a ${type ?? "special file"}; only regular files and directories are allowed`);
      }
      const kind = classifyBundleEntry(name, type === "directory");
      if (kind.kind === "directory") {
        entry.resume();
        continue;
      }
      if (seen.has(kind.path)) throw unsafe(`entry ${quoteInput(name)} appears twice`);
      seen.add(kind.path);
      const [top, ...rest] = kind.path.split("/");
      const isLib = top === "lib";
      const stagedPath = path.join(isLib ? staging.lib : staging.share, ...rest);
      await mkdir(path.dirname(stagedPath), { recursive: true, mode: 0o755 });
      await pipeline(entry, createWriteStream(stagedPath, { flags: "wx", mode: isLib ? 0o755 : 0o644 }));
      staged.push({
        staged: stagedPath,
        target: path.join(isLib ? options.dirs.pkglibdir : options.dirs.sharedir, ...rest),
        order: isLib ? 0 : kind.kind === "control" ? 2 : 1,
      });
    }
  } catch (error) {
    input.destroy();
    if (error instanceof BundleRejectedError) throw unsafe(error.message);
    if (error instanceof UnsafeBundleError || options.signal?.aborted) throw error;
    if ((error as NodeJS.ErrnoException).code !== undefined) throw error;
    throw unsafe(`it is not a valid tar stream (${(error as Error).message})`);
  }
  return staged;
}

async function placeFiles(staged: readonly StagedFile[]): Promise<string[]> {
  const ordered = [...staged].sort((a, b) => a.order - b.order);
  for (const file of ordered) {
    await mkdir(path.dirname(file.target), { recursive: true, mode: 0o755 });
    await rename(file.staged, file.target);
  }
  return staged.map((file) => file.target);
}
