import { parseControlFile } from "./control-file.js";
import { quoteInput } from "../errors/index.js";
import { BundleRejectedError } from "./extension-store-errors.js";

/*
 * A bundle may carry only files of its own extension: every compute that
 * may use it lays them down in its Postgres install, so a file of another
 * extension or of Postgres itself would be replaced there. This module says
 * which files are an extension's own; bundle-entry-rules.ts says where files
 * may sit at all.
 */

/**
 * Names the Postgres install itself ships (PostgreSQL 15, without contrib):
 * no bundle may carry a file of these. contrib's extensions (hstore, …) are
 * not listed: they may be published as bundles of their own.
 */
const postgresInstallNames = {
  extensions: new Set(["plpgsql"]),
  libraries: new Set([
    "plpgsql", "dict_snowball", "libpqwalreceiver", "pgoutput", "llvmjit", "postgres",
    "cyrillic_and_mic", "euc2004_sjis2004", "euc_cn_and_mic", "euc_jp_and_sjis", "euc_kr_and_mic", "euc_tw_and_big5",
    "latin2_and_win1250", "latin_and_mic", "utf8_and_big5", "utf8_and_cyrillic", "utf8_and_euc2004", "utf8_and_euc_cn",
    "utf8_and_euc_jp", "utf8_and_euc_kr", "utf8_and_euc_tw", "utf8_and_gb18030", "utf8_and_gbk", "utf8_and_iso8859",
    "utf8_and_iso8859_1", "utf8_and_johab", "utf8_and_sjis", "utf8_and_sjis2004", "utf8_and_uhc", "utf8_and_win",
  ]),
  /** Stems of share/tsearch_data files (english.stop, ispell_sample.dict …). */
  dataStems: new Set([
    "danish", "dutch", "english", "finnish", "french", "german", "hungarian", "italian", "nepali", "norwegian",
    "portuguese", "russian", "spanish", "swedish", "turkish", "hunspell_sample", "hunspell_sample_long",
    "hunspell_sample_num", "ispell_sample", "synonym_sample", "thesaurus_sample",
  ]),
};

/**
 * Whether `name` is named after extension `extension`: the name itself, or
 * the name with a version after a "-" (postgis-3, timescaledb-2.11.0).
 */
function namedAfter(name: string, extension: string): boolean {
  return name === extension || (name.startsWith(`${extension}-`) && /^[0-9]/.test(name.slice(extension.length + 1)));
}

/**
 * The library a lib/ path belongs to: lib/<lib>.so, lib/bitcode/<lib>.index.bc
 * and lib/bitcode/<lib>/… (LLVM bitcode, as PGXS installs it); undefined for
 * anything else under lib/.
 */
export function libraryOfPath(path: string): string | undefined {
  const so = /^lib\/([^/]+)\.so$/.exec(path);
  if (so !== null) return so[1];
  const index = /^lib\/bitcode\/([^/]+)\.index\.bc$/.exec(path);
  if (index !== null) return index[1];
  return /^lib\/bitcode\/([^/]+)\/.+$/.exec(path)?.[1];
}

/** Why the file at `path` (a normalised bundle path of a regular file) is not extension `extension`'s, or undefined when it may be. Libraries are judged by checkLibraryOwners. */
export function foreignFileReason(path: string, extension: string): string | undefined {
  const segments = path.split("/");
  if (segments[0] === "lib") {
    if (libraryOfPath(path) !== undefined) return undefined;
    return "lib/ holds only libraries (<library>.so) and their LLVM bitcode (bitcode/<library>.index.bc, bitcode/<library>/…)";
  }
  if (segments[1] === "extension") {
    if (postgresInstallNames.extensions.has(extension)) return `extension "${extension}" is part of the Postgres install; no bundle may replace its files`;
    const file = segments[2]!;
    if (file === `${extension}.control` || (file.startsWith(`${extension}--`) && /\.(sql|control)$/.test(file))) return undefined;
    return `it does not belong to extension "${extension}"; share/extension/ may hold only ${extension}.control, ${extension}--*.sql and ${extension}--*.control (publish other extensions as their own bundles)`;
  }
  // share/contrib/… and share/tsearch_data/…: the extension's own file or folder.
  const first = segments[2]!;
  if (postgresInstallNames.dataStems.has(first.split(".")[0]!)) {
    return `share/${segments[1]}/${quoteInput(first)} is a file of the Postgres install; no bundle may replace it`;
  }
  if (namedAfter(first, extension) || first.startsWith(`${extension}.`)) return undefined;
  return `it does not belong to extension "${extension}"; under share/${segments[1]}/ a bundle holds only ${extension}.* files or a ${extension}/ folder`;
}

/** Throws BundleRejectedError when the file is not the extension's own (see foreignFileReason). */
export function checkOwnFile(entryName: string, path: string, extension: string): void {
  const reason = foreignFileReason(path, extension);
  if (reason !== undefined) throw new BundleRejectedError("invalid", entryName, reason);
}

/**
 * The libraries extension `extension` may carry, given its control files'
 * contents: those named after it, and those its control files load
 * (module_pathname '$libdir/x'), never one of the Postgres install's.
 */
export function ownLibraries(extension: string, controlFiles: readonly string[]): (library: string) => boolean {
  const loaded = new Set<string>();
  for (const content of controlFiles) {
    const modulePath = parseControlFile(content).get("module_pathname");
    if (modulePath !== undefined) loaded.add(modulePath.replace(/^\$libdir\//, "").replace(/\.so$/, ""));
  }
  return (library) => !postgresInstallNames.libraries.has(library) && (namedAfter(library, extension) || loaded.has(library));
}

/** A file under lib/ (a library or its bitcode) and the library it belongs to. */
export interface LibraryFile {
  readonly entryName: string;
  readonly library: string;
}

/** Throws BundleRejectedError naming the first library file that is not the extension's own (see ownLibraries). */
export function checkLibraryOwners(
  files: readonly LibraryFile[],
  extension: string,
  controlFiles: readonly string[],
): void {
  const owns = ownLibraries(extension, controlFiles);
  for (const { entryName, library } of files) {
    if (owns(library)) continue;
    throw new BundleRejectedError(
      "invalid",
      entryName,
      postgresInstallNames.libraries.has(library)
        ? `library ${quoteInput(library)} is part of the Postgres install; no bundle may replace it`
        : `library ${quoteInput(library)} is not extension "${extension}"'s: a bundle carries only libraries named after its extension ("${extension}", "${extension}-<version>") or named by module_pathname in its control files (publish other extensions as their own bundles)`,
    );
  }
}
