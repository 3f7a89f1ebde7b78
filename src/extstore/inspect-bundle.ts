import { once } from "node:events";
import * as tar from "tar-stream";
import { classifyBundleEntry } from "./bundle-entry-rules.js";
import { checkLibraryOwners, checkOwnFile, libraryOfPath, type LibraryFile } from "./bundle-ownership.js";
import { BundleRejectedError } from "./extension-store-errors.js";
import { quoteInput } from "../errors/index.js";
import { checkTarFraming } from "./tar-framing.js";

/** Size limits a bundle is checked against. */
export interface BundleLimits {
  readonly maxBundleBytes: number;
  readonly maxFileBytes: number;
  /** Control files are read into memory and inlined in indexes. */
  readonly maxControlFileBytes: number;
  readonly maxEntries: number;
}

/** A control file of a bundle, read while the bundle streamed. */
export interface BundleControlFile {
  /** File name under share/extension/, e.g. "hypopg.control". */
  readonly fileName: string;
  readonly content: string;
}

/** What a bundle provides, learnt while validating it. */
export interface BundleManifest {
  readonly controlFiles: readonly BundleControlFile[];
  /** lib/*.so files, without directory and suffix, sorted. */
  readonly libraries: readonly string[];
  /** Every file under lib/ (libraries and their bitcode) with the library it belongs to. */
  readonly libraryFiles: readonly LibraryFile[];
  readonly entryCount: number;
}

/**
 * Reads a tar stream to its end and checks its framing (TarFraming) and
 * every entry: regular files and directories only, inside the bundle layout
 * (see classifyBundleEntry), files of its own extension only (see
 * bundle-ownership.ts; libraries once its control files are read), no
 * duplicates, sizes within the limits (a declared size is refused before its
 * bytes are read), and `share/extension/<extensionName>.control` present.
 * Throws BundleRejectedError naming the entry at fault.
 */
export async function inspectBundle(
  source: AsyncIterable<Uint8Array>,
  extensionName: string,
  limits: BundleLimits,
): Promise<BundleManifest> {
  const extract = tar.extract();
  const entries = readEntries(extract, extensionName, limits);
  entries.catch(() => undefined); // awaited below; a failure also stops the writer
  try {
    for await (const chunk of checkTarFraming(source)) {
      if (!extract.write(chunk)) await Promise.race([once(extract, "drain"), entries]);
    }
    extract.end(undefined); // streamx types want an argument
  } catch (error) {
    extract.destroy(error as Error);
    await entries.catch(() => undefined);
    throw error;
  }
  const manifest = await entries;
  const wanted = `${extensionName}.control`;
  if (!manifest.controlFiles.some((c) => c.fileName === wanted)) {
    throw new BundleRejectedError(
      "invalid",
      undefined,
      `it has no share/extension/${wanted}; a bundle must hold the control file named for its extension`,
    );
  }
  return manifest;
}

async function readEntries(extract: tar.Extract, extensionName: string, limits: BundleLimits): Promise<BundleManifest> {
  const seen: SeenPaths = { entries: new Set(), kinds: new Map() };
  const controlFiles: BundleControlFile[] = [];
  const libraries: string[] = [];
  const libraryFiles: LibraryFile[] = [];
  let declaredBytes = 0;
  let entryCount = 0;
  try {
    for await (const entry of extract) {
      const { header } = entry;
      entryCount += 1;
      if (entryCount > limits.maxEntries) {
        throw new BundleRejectedError("too_large", header.name, `the bundle has more than ${limits.maxEntries} entries`);
      }
      checkType(header);
      const isDirectory = header.type === "directory";
      const kind = classifyBundleEntry(header.name, isDirectory);
      checkNotSeen(seen, header.name, kind.path, isDirectory);
      if (!isDirectory) {
        checkOwnFile(header.name, kind.path, extensionName);
        const library = libraryOfPath(kind.path);
        if (library !== undefined) libraryFiles.push({ entryName: header.name, library });
        if (header.size > limits.maxFileBytes) {
          throw new BundleRejectedError(
            "too_large",
            header.name,
            `it declares ${header.size} bytes; the limit per file is ${limits.maxFileBytes} bytes (--max-file-bytes)`,
          );
        }
        declaredBytes += header.size;
        if (declaredBytes > limits.maxBundleBytes) {
          throw new BundleRejectedError(
            "too_large",
            header.name,
            `the files declared so far add up to ${declaredBytes} bytes; the limit per bundle is ${limits.maxBundleBytes} bytes (--max-bundle-bytes)`,
          );
        }
      }
      if (kind.kind === "control") {
        if (header.size > limits.maxControlFileBytes) {
          throw new BundleRejectedError(
            "too_large",
            header.name,
            `a control file may hold at most ${limits.maxControlFileBytes} bytes; this one declares ${header.size}`,
          );
        }
        controlFiles.push({ fileName: kind.fileName, content: await readText(entry as AsyncIterable<Uint8Array>, header.name) });
        continue;
      }
      if (kind.kind === "library") libraries.push(kind.library);
      for await (const _ of entry as AsyncIterable<Uint8Array>) {
        // drain: the bytes were already hashed and spooled by the caller
      }
    }
  } catch (error) {
    if (error instanceof BundleRejectedError) throw error;
    throw new BundleRejectedError("invalid", undefined, `it is not a valid tar stream (${(error as Error).message})`);
  }
  if (entryCount === 0) throw new BundleRejectedError("invalid", undefined, "the tar stream holds no entries");
  checkLibraryOwners(libraryFiles, extensionName, controlFiles.map((c) => c.content));
  return { controlFiles, libraries: [...new Set(libraries)].sort(), libraryFiles, entryCount };
}

function checkType(header: tar.Header): void {
  switch (header.type) {
    case "file":
    case "directory":
      return;
    case "symlink":
    case "link":
      throw new BundleRejectedError(
        "invalid",
        header.name,
        `it is a ${header.type === "link" ? "hard link" : "symbolic link"} to ${quoteInput(header.linkname)}; bundles hold regular files and directories only (pack the target's content instead)`,
      );
    default:
      throw new BundleRejectedError(
        "invalid",
        header.name,
        `it is a ${header.type ?? "special"} entry; bundles hold regular files and directories only`,
      );
  }
}

/** Paths met so far: every entry's path, and the folders implied by them. */
interface SeenPaths {
  readonly entries: Set<string>;
  readonly kinds: Map<string, "file" | "directory">;
}

/** Refuses a second entry for a path, and a file that shadows a folder or the reverse. */
function checkNotSeen(seen: SeenPaths, name: string, path: string, isDirectory: boolean): void {
  if (seen.entries.has(path)) {
    throw new BundleRejectedError("invalid", name, "the bundle already has an entry with this path; names must be unique");
  }
  if (!isDirectory && seen.kinds.get(path) === "directory") {
    throw new BundleRejectedError("invalid", name, "it is a file, but the bundle also has entries inside a folder of this name");
  }
  const segments = path.split("/");
  for (let i = 1; i < segments.length; i += 1) {
    const parent = segments.slice(0, i).join("/");
    if (seen.kinds.get(parent) === "file") {
      throw new BundleRejectedError("invalid", name, `its parent ${quoteInput(parent)} is a file in the bundle`);
    }
    seen.kinds.set(parent, "directory");
  }
  seen.entries.add(path);
  seen.kinds.set(path, isDirectory ? "directory" : "file");
}

async function readText(entry: AsyncIterable<Uint8Array>, name: string): Promise<string> {
  const parts: Buffer[] = [];
  for await (const chunk of entry) parts.push(Buffer.from(chunk));
  const bytes = Buffer.concat(parts);
  const text = bytes.toString("utf8");
  if (!Buffer.from(text, "utf8").equals(bytes)) {
    throw new BundleRejectedError("invalid", name, "a control file must be UTF-8 text");
  }
  return text;
}
