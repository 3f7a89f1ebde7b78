import { randomBytes } from "node:crypto";
import { chmod, copyFile, cp, mkdir, mkdtemp, readdir, readFile, realpath, rename, rm, stat, symlink, writeFile } from "node:fs/promises";
import { createHash } from "node:crypto";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import { outputTail, resolveUnprivilegedUser, type OsUser } from "../pg/index.js";
import { BundleBuildError } from "./bundle-errors.js";
import { hashTree, listTree, sameBundle, type BundleManifest, type VersionManifest } from "./bundle-manifest.js";
import { compileBundleOptions, type BundleOptions, type CompiledBundleOptions } from "./bundle-options.js";
import { isElf, sharedLibraryClosure } from "./shared-library-closure.js";
import { buildWalredoTemplate, WALREDO_TEMPLATE } from "./walredo-template.js";

export interface BuiltBundle {
  readonly outDir: string;
  /** DIR/launcher: `launcher VERSION BINARY [ARGS…]`. */
  readonly launcher: string;
  readonly manifest: BundleManifest;
  /** false when the inputs were unchanged and the existing bundle was kept as it was. */
  readonly changed: boolean;
}

/** The pgext/ module that provides the walredo mode, the bundle's postgres wrapper and the launcher. */
const WALREDO_MODULE = "walredo";

/** Device nodes of the chroot: "nothing from the host but the kernel". */
const DEVICES: ReadonlyArray<[string, number, number]> = [
  ["null", 1, 3], ["zero", 1, 5], ["full", 1, 7], ["random", 1, 8], ["urandom", 1, 9],
];

interface PgxsModule {
  readonly name: string;
  readonly dir: string;
}

async function run(file: string, args: readonly string[], options: { cwd?: string; input?: string } = {}): Promise<string> {
  const result = await execa(file, args, { ...options, all: true, reject: false });
  if (result.exitCode !== 0) {
    throw new BundleBuildError(`${path.basename(file)} ${args.join(" ")} failed (exit ${result.exitCode}):\n${outputTail(result.all, 15)}`);
  }
  return result.stdout;
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch {
    return false;
  }
}

/** Subdirectories of pgext/ whose Makefile uses PGXS. */
async function findPgxsModules(pgextDir: string): Promise<PgxsModule[]> {
  const modules: PgxsModule[] = [];
  for (const name of (await readdir(pgextDir)).sort()) {
    try {
      const makefile = await readFile(path.join(pgextDir, name, "Makefile"), "utf8");
      if (/\bPGXS\b/.test(makefile)) modules.push({ name, dir: path.join(pgextDir, name) });
    } catch {
      // not a module directory
    }
  }
  if (!modules.some((m) => m.name === WALREDO_MODULE)) {
    throw new BundleBuildError(`no ${WALREDO_MODULE} module in ${pgextDir}; the bundle needs pgext/${WALREDO_MODULE} (--pgext-dir)`);
  }
  return modules;
}

const BUILD_PRODUCT = /\.(o|so|bc)$|^(walredo-wrapper|pgmesh-launcher)$/;

/**
 * Builds a module in a private copy (parallel builds never share object
 * files), with source paths mapped so the output is reproducible, and
 * installs it into the version tree.
 */
async function buildModule(module: PgxsModule, buildRoot: string, pgConfig: string, destDir: string): Promise<string> {
  const buildDir = path.join(buildRoot, module.name);
  await cp(module.dir, buildDir, { recursive: true, filter: (src) => !BUILD_PRODUCT.test(path.basename(src)) });
  const makeArgs = [
    "-C", buildDir, `PG_CONFIG=${pgConfig}`, "with_llvm=no",
    `COPT=-ffile-prefix-map=${buildDir}=pgext/${module.name}`,
  ];
  await run("make", makeArgs);
  await run("make", [...makeArgs, "install", `DESTDIR=${destDir}`]);
  return buildDir;
}

async function pgConfigValue(pgConfig: string, flag: string): Promise<string> {
  return (await run(pgConfig, [flag])).trim();
}

async function debVersion(pkg: string): Promise<string | undefined> {
  const result = await execa("dpkg-query", ["-W", "-f=${Version}", pkg], { reject: false });
  return result.exitCode === 0 && result.stdout ? result.stdout : undefined;
}

async function copyDebianFiles(vdir: string, dirs: { bindir: string; sharedir: string; pkglibdir: string }): Promise<void> {
  await cp(dirs.bindir, path.join(vdir, dirs.bindir), { recursive: true, verbatimSymlinks: true });
  await cp(dirs.sharedir, path.join(vdir, dirs.sharedir), { recursive: true, verbatimSymlinks: true });
  await mkdir(path.join(vdir, dirs.pkglibdir), { recursive: true });
  for (const name of await readdir(dirs.pkglibdir)) {
    // llvmjit needs LLVM (hundreds of MiB): without it Postgres simply runs without JIT.
    if (!name.endsWith(".so") || name.startsWith("llvmjit")) continue;
    await copyFile(path.join(dirs.pkglibdir, name), path.join(vdir, dirs.pkglibdir, name));
  }
}

/** bin/: the walredo-capable postgres, symlinks to Debian's other programs, and sh. */
async function makeBinDir(vdir: string, bindir: string, wrapper: string): Promise<void> {
  const bin = path.join(vdir, "bin");
  await mkdir(bin);
  for (const name of (await readdir(bindir)).sort()) {
    if (name === "postgres") continue;
    await symlink(path.join("..", bindir.slice(1), name), path.join(bin, name));
  }
  await copyFile(wrapper, path.join(bin, "postgres"));
  await chmod(path.join(bin, "postgres"), 0o755);
  // initdb and pg_ctl start postgres through /bin/sh.
  await copyFile(await realpath("/bin/sh"), path.join(bin, "sh"));
  await chmod(path.join(bin, "sh"), 0o755);
}

async function elfFiles(dir: string): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) found.push(...await elfFiles(full));
    else if (entry.isFile() && await isElf(full)) found.push(full);
  }
  return found;
}

/** Copies the ldd closure into usr/lib/<multiarch> and the loader to its own path. */
async function copySharedLibraries(vdir: string, multiarch: string): Promise<{ interpreter: string; libraryDir: string; libraries: string[] }> {
  const closure = await sharedLibraryClosure(await elfFiles(vdir));
  const libraryDir = `usr/lib/${multiarch}`;
  await mkdir(path.join(vdir, libraryDir), { recursive: true });
  for (const lib of closure.libraries) {
    await copyFile(lib, path.join(vdir, libraryDir, path.basename(lib)));
  }
  await mkdir(path.join(vdir, path.dirname(closure.interpreter)), { recursive: true });
  await copyFile(closure.interpreter, path.join(vdir, closure.interpreter));
  return { interpreter: closure.interpreter.slice(1), libraryDir, libraries: [...closure.libraries] };
}

async function makeSystemFiles(vdir: string, user: OsUser, libraryDir: string): Promise<void> {
  const etc = path.join(vdir, "etc");
  await mkdir(etc);
  await writeFile(path.join(etc, "passwd"), `root:x:0:0:root:/root:/bin/sh\n${user.name}:x:${user.uid}:${user.gid}:PostgreSQL:/tmp:/bin/sh\n`);
  await writeFile(path.join(etc, "group"), `root:x:0:\n${user.name}:x:${user.gid}:\n`);
  await writeFile(path.join(etc, "nsswitch.conf"), "passwd: files\ngroup: files\nhosts: files\n");
  await writeFile(path.join(etc, "ld.so.conf"), `/${libraryDir}\n`);
  await run("ldconfig", ["-r", vdir]);

  // Debian's postgres reads time zones from /usr/share/zoneinfo (--with-system-tzdata).
  await cp("/usr/share/zoneinfo", path.join(vdir, "usr/share/zoneinfo"), { recursive: true, verbatimSymlinks: true });
  if (await exists("/usr/lib/locale/C.utf8")) {
    await cp("/usr/lib/locale/C.utf8", path.join(vdir, "usr/lib/locale/C.utf8"), { recursive: true });
  }

  const dev = path.join(vdir, "dev");
  await mkdir(dev);
  for (const [name, major, minor] of DEVICES) {
    await run("mknod", ["-m", "666", path.join(dev, name), "c", String(major), String(minor)]);
  }
  for (const dir of [path.join(dev, "shm"), path.join(vdir, "tmp")]) {
    await mkdir(dir);
    await chmod(dir, 0o1777);
  }
}

async function buildVersion(
  tmp: string,
  major: number,
  modules: readonly PgxsModule[],
  user: OsUser,
  options: CompiledBundleOptions,
): Promise<VersionManifest> {
  const vdir = path.join(tmp, `v${major}`);
  const pgConfig = path.join(options.pgRoot, String(major), "bin", "pg_config");
  const dirs = {
    bindir: await pgConfigValue(pgConfig, "--bindir"),
    sharedir: await pgConfigValue(pgConfig, "--sharedir"),
    pkglibdir: await pgConfigValue(pgConfig, "--pkglibdir"),
  };
  options.log(`v${major}: copying PostgreSQL from ${dirs.bindir}`);
  await copyDebianFiles(vdir, dirs);

  let walredoBuild = "";
  for (const module of modules) {
    options.log(`v${major}: building pgext/${module.name}`);
    const buildDir = await buildModule(module, path.join(tmp, ".build", `v${major}`), pgConfig, vdir);
    if (module.name === WALREDO_MODULE) walredoBuild = buildDir;
  }
  await makeBinDir(vdir, dirs.bindir, path.join(walredoBuild, "walredo-wrapper"));
  await symlink(dirs.pkglibdir.slice(1), path.join(vdir, "lib"));
  await symlink(dirs.sharedir.slice(1), path.join(vdir, "share"));
  if (!await exists(path.join(tmp, "launcher"))) {
    await copyFile(path.join(walredoBuild, "pgmesh-launcher"), path.join(tmp, "launcher"));
    await chmod(path.join(tmp, "launcher"), 0o755);
  }

  options.log(`v${major}: copying shared libraries`);
  const multiarch = (await run("cc", ["-print-multiarch"])).trim();
  const shared = await copySharedLibraries(vdir, multiarch);
  await makeSystemFiles(vdir, user, shared.libraryDir);

  options.log(`v${major}: building the walredo template cluster`);
  await buildWalredoTemplate({ bundleDir: tmp, major, user });

  const icuLib = shared.libraries.find((lib) => /\/libicuuc\.so\.\d+$/.test(lib));
  const icuVersion = icuLib ? /libicuuc\.so\.([\d.]+)$/.exec(await realpath(icuLib))?.[1] ?? "unknown" : "none";
  const glibcVersion = (await run("getconf", ["GNU_LIBC_VERSION"])).trim().replace(/^glibc /, "");
  const packages: Record<string, string> = {};
  for (const pkg of [`postgresql-${major}`, "libc6", `libicu${icuVersion.split(".")[0]}`]) {
    const version = await debVersion(pkg);
    if (version) packages[pkg] = version;
  }
  return {
    major,
    postgresVersion: (await run(path.join(dirs.bindir, "postgres"), ["--version"])).trim(),
    icuVersion,
    glibcVersion,
    packages,
    interpreter: shared.interpreter,
    libraryDir: shared.libraryDir,
    walredoTemplate: WALREDO_TEMPLATE,
    modules: modules.map((m) => m.name),
    entries: await listTree(vdir, new Set([WALREDO_TEMPLATE])),
  };
}

/**
 * Moves the new tree into place; the old one (if any) is removed once the new
 * one is there. False when a concurrent build put its tree there first.
 */
async function swapInto(tmp: string, outDir: string): Promise<boolean> {
  const old = `${outDir}.old-${randomBytes(4).toString("hex")}`;
  let hadOld = true;
  try {
    await rename(outDir, old);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    hadOld = false;
  }
  try {
    await rename(tmp, outDir);
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== "ENOTEMPTY" && code !== "EEXIST") throw error;
    return false;
  } finally {
    if (hadOld) await rm(old, { recursive: true, force: true });
  }
}

/** What the bundle is built from; an unchanged fingerprint means the existing bundle is current. */
async function inputFingerprint(options: CompiledBundleOptions, modules: readonly PgxsModule[], user: OsUser): Promise<string> {
  const inputs: Record<string, unknown> = {
    builder: await hashTree(path.dirname(fileURLToPath(import.meta.url)), (name) => name.endsWith(".map")),
    modules: Object.fromEntries(await Promise.all(modules.map(async (m) =>
      [m.name, await hashTree(m.dir, (name) => BUILD_PRODUCT.test(name))] as const))),
    user,
    libc: await debVersion("libc6"),
  };
  for (const major of options.majors) {
    const bin = path.join(options.pgRoot, String(major), "bin");
    inputs[`v${major}`] = {
      postgres: (await run(path.join(bin, "postgres"), ["--version"])).trim(),
      package: await debVersion(`postgresql-${major}`),
      libicu: (await run("ldd", [path.join(bin, "postgres")])).split("\n").filter((l) => l.includes("libicu")).map((l) => l.trim().split(" ")[0]),
    };
  }
  return createHash("sha256").update(JSON.stringify(inputs)).digest("hex");
}

async function readManifest(outDir: string): Promise<BundleManifest | undefined> {
  try {
    return JSON.parse(await readFile(path.join(outDir, "manifest.json"), "utf8")) as BundleManifest;
  } catch {
    return undefined;
  }
}

/**
 * Builds the self-contained bundle from the installed Debian PostgreSQL:
 * DIR/launcher, DIR/manifest.json and one root filesystem DIR/v<major> per
 * major. Built in a temporary sibling directory and renamed into place; when
 * the result equals the existing bundle, the existing one stays untouched.
 */
export async function buildBundle(options: BundleOptions = {}): Promise<BuiltBundle> {
  const compiled = await compileBundleOptions(options);
  if ((process.getuid?.() ?? 0) !== 0) {
    throw new BundleBuildError("building a bundle needs root (device nodes, file ownership, switching to the postgres user); run it as root");
  }
  const user = await resolveUnprivilegedUser(compiled.postgresUser);
  const modules = await findPgxsModules(compiled.pgextDir);
  const fingerprint = await inputFingerprint(compiled, modules, user);
  const current = await readManifest(compiled.outDir);
  if (current?.inputFingerprint === fingerprint) {
    compiled.log(`bundle in ${compiled.outDir} is up to date`);
    return { outDir: compiled.outDir, launcher: path.join(compiled.outDir, "launcher"), manifest: current, changed: false };
  }
  await mkdir(path.dirname(compiled.outDir), { recursive: true });
  const tmp = await mkdtemp(`${compiled.outDir}.tmp-`);
  await chmod(tmp, 0o755);
  try {
    const versions: Record<string, VersionManifest> = {};
    for (const major of compiled.majors) {
      versions[String(major)] = await buildVersion(tmp, major, modules, user, compiled);
    }
    await rm(path.join(tmp, ".build"), { recursive: true, force: true });
    const manifest: BundleManifest = { formatVersion: 1, inputFingerprint: fingerprint, versions };
    await writeFile(path.join(tmp, "manifest.json"), `${JSON.stringify(manifest, null, 1)}\n`);

    const existing = await readManifest(compiled.outDir);
    const changed = (existing === undefined || !sameBundle(existing, manifest)) && await swapInto(tmp, compiled.outDir);
    if (!changed) await rm(tmp, { recursive: true, force: true });
    compiled.log(changed ? `bundle written to ${compiled.outDir}` : `bundle in ${compiled.outDir} is up to date`);
    return { outDir: compiled.outDir, launcher: path.join(compiled.outDir, "launcher"), manifest, changed };
  } catch (error) {
    await rm(tmp, { recursive: true, force: true });
    throw error instanceof BundleBuildError ? error : new BundleBuildError(`building the bundle failed: ${(error as Error).message}`, { cause: error });
  }
}
