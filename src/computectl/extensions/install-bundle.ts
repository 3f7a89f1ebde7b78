import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, mkdtemp, open, readFile, rename, rm } from "node:fs/promises";
import path from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import * as tar from "tar-stream";
import {
  BundleRejectedError,
  checkLibraryOwners,
  checkOwnFile,
  checkTarFraming,
  classifyBundleEntry,
  libraryOfPath,
  type LibraryFile,
} from "../../extstore/index.js";
import { BundleChecksumError, UnsafeBundleError } from "./extension-errors.js";
import { placeOwnedFiles } from "./install-file-owners.js";
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
  /** Absolute paths of the files placed, libraries first (not those the Postgres install already had with the same bytes). */
  readonly files: readonly string[];
}

interface StagedFile {
  /** Its bundle path, e.g. "lib/hstore.so". */
  readonly path: string;
  readonly staged: string;
  readonly target: string;
  readonly sha256: string;
  /** Libraries first, then scripts and data, control files last. */
  readonly order: 0 | 1 | 2;
}

/**
 * Installs a bundle (a tar of lib/… and share/… files) into a Postgres
 * install. The bytes are spooled to disk while their sha256 is computed and
 * checked before anything is extracted; the tar framing and every entry are
 * re-validated with the ExtensionStore's bundle rules (regular files and
 * directories only, no path escaping, only lib/ and share/, only the
 * extension's own files, nothing after the end-of-archive marker), so a
 * store that serves a bad bundle cannot get it installed; the files are
 * extracted into staging directories on the same file systems as their
 * targets, then placed through the install's ownership record
 * (placeOwnedFiles: never over a file another extension or the Postgres
 * install owns, FileOwnerConflictError naming both owners), libraries, then
 * scripts, then control files. On any failure nothing has been placed and
 * the staging directories are gone.
 */
export async function installBundle(chunks: AsyncIterable<Uint8Array>, options: InstallBundleOptions): Promise<InstalledBundle> {
  const shareStaging = await mkdtemp(path.join(options.dirs.sharedir, ".pgmesh-staging-"));
  let libStaging: string | undefined;
  try {
    const spool = path.join(shareStaging, "bundle.tar");
    const bytes = await spoolVerified(chunks, spool, options);
    libStaging = await mkdtemp(path.join(options.dirs.pkglibdir, ".pgmesh-staging-"));
    const staged = await extractToStaging(spool, { share: path.join(shareStaging, "tree"), lib: libStaging }, options);
    return { bytes, files: await placeFiles(staged, options) };
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
  const input = Readable.from(checkTarFraming(createReadStream(spool)));
  input.on("error", (error) => extract.destroy(error));
  input.pipe(extract);
  const staged: StagedFile[] = [];
  const seen = new Set<string>();
  const libraryFiles: LibraryFile[] = [];
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
      checkOwnFile(name, kind.path, options.extension);
      const library = libraryOfPath(kind.path);
      if (library !== undefined) libraryFiles.push({ entryName: name, library });
      const [top, ...rest] = kind.path.split("/");
      const isLib = top === "lib";
      const stagedPath = path.join(isLib ? staging.lib : staging.share, ...rest);
      await mkdir(path.dirname(stagedPath), { recursive: true, mode: 0o755 });
      const hash = createHash("sha256");
      await pipeline(
        entry,
        async function* (source: AsyncIterable<unknown>) {
          for await (const chunk of source) {
            hash.update(chunk as Buffer);
            yield chunk;
          }
        },
        createWriteStream(stagedPath, { flags: "wx", mode: isLib ? 0o755 : 0o644 }),
      );
      staged.push({
        path: kind.path,
        staged: stagedPath,
        target: path.join(isLib ? options.dirs.pkglibdir : options.dirs.sharedir, ...rest),
        sha256: hash.digest("hex"),
        order: isLib ? 0 : kind.kind === "control" ? 2 : 1,
      });
    }
    const controls = staged.filter((file) => file.order === 2);
    checkLibraryOwners(libraryFiles, options.extension, await Promise.all(controls.map((file) => readFile(file.staged, "utf8"))));
  } catch (error) {
    input.destroy();
    if (error instanceof BundleRejectedError) throw unsafe(error.message);
    if (error instanceof UnsafeBundleError || options.signal?.aborted) throw error;
    if ((error as NodeJS.ErrnoException).code !== undefined) throw error;
    throw unsafe(`it is not a valid tar stream (${(error as Error).message})`);
  }
  return staged;
}

function placeFiles(staged: readonly StagedFile[], options: InstallBundleOptions): Promise<string[]> {
  const ordered = [...staged].sort((a, b) => a.order - b.order);
  return placeOwnedFiles(
    options.dirs,
    { extension: options.extension, bundleSha256: options.sha256 },
    ordered.map((file) => ({ ...file, put: () => rename(file.staged, file.target) })),
  );
}
