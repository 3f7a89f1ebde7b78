import { lstat, mkdtemp, readdir, readFile, realpath, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join, relative, sep } from "node:path";
import { execa } from "execa";
import { classifyBundleEntry } from "./bundle-entry-rules.js";
import { foreignFileReason, libraryOfPath, ownLibraries } from "./bundle-ownership.js";
import { parseControlFile } from "./control-file.js";
import type { BundleFile } from "./deterministic-tar.js";

/** The files of one extension, ready to be written as a bundle. */
export interface PackSource {
  readonly name: string;
  /** default_version of its control file. */
  readonly version: string;
  readonly files: readonly BundleFile[];
  /** Removes temporary files (the unpacked .deb). */
  dispose(): Promise<void>;
}

/** Something the packer cannot turn into a bundle; the message says what to do. */
export class PackError extends Error {
  override readonly name = "PackError";
}

/**
 * Unpacks a Debian package (`dpkg-deb -x`) and maps its Postgres files:
 * usr/lib/postgresql/<major>/lib/** → lib/**,
 * usr/share/postgresql/<major>/extension/* → share/extension/*,
 * usr/share/postgresql/<major>/<folder>/** → share/<folder>/**.
 * Other files (docs, binaries) are left out. Symlinks inside the package are
 * replaced by their targets' contents; ones leading outside it are refused.
 * The extension name is that of its control file (`name` when several; the
 * other extensions' files and libraries are then left out).
 */
export async function packSourceFromDeb(debPath: string, pgMajor: number, name?: string): Promise<PackSource> {
  const root = await mkdtemp(join(tmpdir(), "pgmesh-pack-deb-"));
  const dispose = () => rm(root, { recursive: true, force: true });
  try {
    const result = await execa("dpkg-deb", ["-x", debPath, root], { reject: false, all: true });
    if (result.exitCode !== 0) throw new PackError(`dpkg-deb -x ${debPath} failed: ${(result.all ?? "").trim()}`);
    const libDir = join(root, "usr", "lib", "postgresql", String(pgMajor), "lib");
    const shareDir = join(root, "usr", "share", "postgresql", String(pgMajor));
    const files = [
      ...(await filesUnder(root, libDir, "lib")),
      ...(await filesUnder(root, shareDir, "share")),
    ];
    if (files.length === 0) {
      throw new PackError(
        `${basename(debPath)} has no files under usr/lib/postgresql/${pgMajor}/lib or usr/share/postgresql/${pgMajor}; is it a PostgreSQL ${pgMajor} extension package?`,
      );
    }
    const described = await describe(files, name);
    return { ...described, files: await ownFiles(files, described.name), dispose };
  } catch (error) {
    await dispose();
    throw error;
  }
}

/**
 * Takes an extension installed in a Postgres install (pg_config): its control
 * file(s) <name>.control and <name>--*.control, its scripts <name>--*.sql,
 * and the libraries it loads — module_pathname and every '$libdir/x' its
 * scripts name, when they are its own (bundle-ownership.ts) — with their
 * LLVM bitcode when present.
 */
export async function packSourceFromPgConfig(name: string, pgConfig = "pg_config"): Promise<PackSource> {
  const { stdout } = await execa(pgConfig, ["--sharedir", "--pkglibdir"]);
  const [sharedir, pkglibdir] = stdout.trim().split("\n").map((l) => l.trim());
  const extensionDir = join(sharedir!, "extension");
  const own = (f: string) => f === `${name}.control` || (f.startsWith(`${name}--`) && (f.endsWith(".sql") || f.endsWith(".control")));
  const scriptNames = (await readdir(extensionDir)).filter(own).sort();
  if (!scriptNames.includes(`${name}.control`)) {
    throw new PackError(`${join(extensionDir, `${name}.control`)} does not exist; is extension "${name}" installed (pg_config ${pgConfig})?`);
  }
  const files: BundleFile[] = scriptNames.map((f) => ({ path: `share/extension/${f}`, source: join(extensionDir, f) }));
  const libraries = new Set<string>();
  const control = parseControlFile(await readFile(join(extensionDir, `${name}.control`), "utf8"));
  const modulePath = control.get("module_pathname");
  if (modulePath !== undefined) libraries.add(libraryName(modulePath));
  for (const script of scriptNames.filter((f) => f.endsWith(".sql"))) {
    const text = await readFile(join(extensionDir, script), "utf8");
    for (const match of text.matchAll(/'\$libdir\/([A-Za-z0-9_.-]+)'/g)) libraries.add(libraryName(match[1]!));
  }
  for (const library of [...libraries].sort()) {
    const so = join(pkglibdir!, `${library}.so`);
    if (!(await isFile(so))) throw new PackError(`extension "${name}" loads library ${library}, but ${so} does not exist`);
    files.push({ path: `lib/${library}.so`, source: await realpath(so) });
    const bitcodeDir = join(pkglibdir!, "bitcode");
    if (await isFile(join(bitcodeDir, `${library}.index.bc`))) {
      files.push({ path: `lib/bitcode/${library}.index.bc`, source: join(bitcodeDir, `${library}.index.bc`) });
      files.push(...(await filesUnder(pkglibdir!, join(bitcodeDir, library), `lib/bitcode/${library}`)));
    }
  }
  return { ...(await describe(files, name)), files: await ownFiles(files, name), dispose: async () => undefined };
}

/**
 * The files that are extension `name`'s own (bundle-ownership.ts): the
 * store refuses a bundle with any other, so another extension's files and
 * libraries in the same package, or a library of another extension its
 * scripts load, are left out.
 */
async function ownFiles(files: readonly BundleFile[], name: string): Promise<BundleFile[]> {
  const control = `share/extension/${name}.control`;
  const reason = foreignFileReason(control, name);
  if (reason !== undefined) throw new PackError(`cannot pack extension "${name}": ${reason}`);
  const controls = files.filter((f) => f.path.endsWith(".control") && foreignFileReason(f.path, name) === undefined);
  const owns = ownLibraries(name, await Promise.all(controls.map((f) => readFile(f.source, "utf8"))));
  return files.filter((f) => {
    const library = libraryOfPath(f.path);
    return library === undefined ? foreignFileReason(f.path, name) === undefined : owns(library);
  });
}

function libraryName(modulePath: string): string {
  return basename(modulePath.replace(/^\$libdir\//, "")).replace(/\.so$/, "");
}

/** The extension's name and default_version, from its control file among `files`, checked against the bundle rules. */
async function describe(files: readonly BundleFile[], wanted?: string): Promise<{ name: string; version: string }> {
  for (const file of files) classifyBundleEntry(file.path, false);
  const controls = files.filter((f) => /^share\/extension\/[^/]+\.control$/.test(f.path) && !f.path.includes("--"));
  const names = controls.map((f) => basename(f.path, ".control"));
  const name = wanted ?? (names.length === 1 ? names[0] : undefined);
  if (name === undefined) {
    throw new PackError(
      names.length === 0
        ? "the package ships no share/extension/*.control file; it is not a Postgres extension"
        : `the package ships several extensions (${names.join(", ")}); choose one with --name`,
    );
  }
  const control = controls.find((f) => basename(f.path, ".control") === name);
  if (control === undefined) throw new PackError(`the package has no share/extension/${name}.control`);
  const version = parseControlFile(await readFile(control.source, "utf8")).get("default_version") ?? "";
  return { name, version };
}

/**
 * Regular files under `dir` as bundle files under `prefix`. A symlink is
 * followed when its target stays inside `root` and is a regular file.
 */
async function filesUnder(root: string, dir: string, prefix: string): Promise<BundleFile[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const files: BundleFile[] = [];
  const realRoot = await realpath(root);
  for (const entry of names.sort()) {
    const path = join(dir, entry);
    const bundlePath = `${prefix}/${entry}`;
    const stats = await lstat(path);
    if (stats.isDirectory()) {
      files.push(...(await filesUnder(root, path, bundlePath)));
    } else if (stats.isFile()) {
      files.push({ path: bundlePath, source: path });
    } else if (stats.isSymbolicLink()) {
      const target = await realpath(path).catch(() => undefined);
      if (target === undefined || !(target + sep).startsWith(realRoot + sep) || !(await isFile(target))) {
        throw new PackError(`${relative(root, path)} is a symlink that leaves the package or points nowhere; bundles hold regular files only`);
      }
      files.push({ path: bundlePath, source: target });
    } else {
      throw new PackError(`${relative(root, path)} is not a regular file; bundles hold regular files only`);
    }
  }
  return files;
}

async function isFile(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isFile() ?? false;
}
