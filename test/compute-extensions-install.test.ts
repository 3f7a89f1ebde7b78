import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Code } from "@connectrpc/connect";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  BundleChecksumError,
  FileOwnerConflictError,
  installBundle,
  UnsafeBundleError,
  type PgInstallDirs,
} from "../src/computectl/extensions/index.js";
import { chunksOf, packContribBundle, packTar, type TarEntry } from "./helpers/compute-extensions-fixtures.js";

const sha256Of = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");

/** Every file under dir, relative, sorted (hidden staging dirs included). */
async function listTree(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile() || e.isDirectory())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)) + (e.isDirectory() ? "/" : ""))
    .sort();
}

describe("installBundle", () => {
  let root: string;
  let dirs: PgInstallDirs;

  beforeEach(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), "pgmesh-install-bundle-"));
    dirs = { sharedir: path.join(root, "share"), pkglibdir: path.join(root, "lib") };
    await mkdir(path.join(dirs.sharedir, "extension"), { recursive: true });
    await mkdir(dirs.pkglibdir, { recursive: true });
  });

  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  const install = (bytes: Buffer, sha256 = sha256Of(bytes), maxBundleBytes = 1 << 30) =>
    installBundle(chunksOf(bytes, 4096), { extension: "hstore", sha256, dirs, maxBundleBytes });

  it("places the library in pkglibdir and the scripts and control file in sharedir/extension", async () => {
    const bundle = await packContribBundle("hstore");
    const installed = await install(bundle.tar);
    expect(installed.bytes).toBe(bundle.tar.length);
    expect(await readFile(path.join(dirs.pkglibdir, "hstore.so"))).toEqual(await readFile("/usr/lib/postgresql/15/lib/hstore.so"));
    expect(await readFile(path.join(dirs.sharedir, "extension", "hstore--1.4.sql"), "utf8")).toBe(
      await readFile("/usr/share/postgresql/15/extension/hstore--1.4.sql", "utf8"),
    );
    expect(installed.files).toContain(path.join(dirs.sharedir, "extension", "hstore.control"));
    expect((await stat(path.join(dirs.pkglibdir, "hstore.so"))).mode & 0o777).toBe(0o755);
    expect(await listTree(root)).not.toContainEqual(expect.stringContaining(".pgmesh-staging-"));
  });

  it("refuses bytes whose sha256 is not the expected one and places no file", async () => {
    const bundle = await packContribBundle("hstore");
    const wrong = "0".repeat(64);
    const before = await listTree(root);
    const attempt = install(bundle.tar, wrong);
    await expect(attempt).rejects.toThrow(BundleChecksumError);
    await expect(attempt).rejects.toMatchObject({
      code: Code.DataLoss,
      message: expect.stringContaining(`has sha256 ${bundle.sha256}, but the spec names ${wrong}; nothing was installed`),
    });
    expect(await listTree(root)).toEqual(before);
  });

  it("refuses a bundle corrupted in one byte", async () => {
    const bundle = await packContribBundle("hstore");
    const corrupted = Buffer.from(bundle.tar);
    corrupted[corrupted.length >> 1]! ^= 0xff;
    const before = await listTree(root);
    await expect(install(corrupted, bundle.sha256)).rejects.toThrow(BundleChecksumError);
    expect(await listTree(root)).toEqual(before);
  });

  const unsafeCases: [string, TarEntry[], RegExp][] = [
    ["a path escaping with ..", [{ name: "share/extension/../../../etc/passwd", content: "x" }], /"\.\." segments are not allowed/],
    ["an absolute path", [{ name: "/etc/passwd", content: "x" }], /absolute paths are not allowed/],
    ["a file outside lib/ and share/", [{ name: "bin/postgres", content: "x" }], /outside the bundle layout/],
    ["a Postgres file under share/", [{ name: "share/postgres.bki", content: "x" }], /outside the bundle layout/],
    ["a symlink", [{ name: "lib/evil.so", type: "symlink", linkname: "/etc/passwd" }], /is a symlink; only regular files and directories/],
    ["a file given twice", [{ name: "lib/a.so", content: "1" }, { name: "./lib/a.so", content: "2" }], /appears twice/],
    ["another extension's library", [{ name: "lib/citext.so", content: "x" }], /library "citext" is not extension "hstore"'s/],
    ["a library of the Postgres install", [{ name: "lib/plpgsql.so", content: "x" }], /library "plpgsql" is part of the Postgres install/],
    ["another extension's control file", [{ name: "share/extension/citext.control", content: "x" }], /does not belong to extension "hstore"/],
  ];

  for (const [what, entries, message] of unsafeCases) {
    it(`refuses ${what} and places no file, not even the safe ones before it`, async () => {
      const bytes = await packTar([{ name: "share/extension/hstore.control", content: "comment = 'x'\n" }, ...entries]);
      const before = await listTree(root);
      const attempt = install(bytes);
      await expect(attempt).rejects.toThrow(UnsafeBundleError);
      await expect(attempt).rejects.toThrow(message);
      await expect(attempt).rejects.toMatchObject({ code: Code.FailedPrecondition });
      expect(await listTree(root)).toEqual(before);
    });
  }

  it("refuses bytes that are not a tar", async () => {
    const bytes = Buffer.from("this is not a tar archive, just text that is long enough to be looked at. ".repeat(20));
    await expect(install(bytes)).rejects.toThrow(/is not a valid tar stream|outside the bundle layout|refused/);
    expect(await listTree(root)).toEqual(["lib/", "share/", "share/extension/"]);
  });

  it("refuses a bundle over maxBundleBytes before it is complete", async () => {
    const bundle = await packContribBundle("hstore");
    await expect(install(bundle.tar, bundle.sha256, 10_000)).rejects.toThrow(/larger than 10000 bytes, the limit/);
    expect(await listTree(root)).toEqual(["lib/", "share/", "share/extension/"]);
  });

  it("refuses an entry after the end-of-archive marker, which GNU tar would not see, and places no file", async () => {
    const bundle = await packContribBundle("hstore");
    const hidden = await packTar([{ name: "share/extension/hstore--9.9.sql", content: "-- after the end\n" }]);
    const bytes = Buffer.concat([bundle.tar, hidden]);
    const before = await listTree(root);
    await expect(install(bytes)).rejects.toThrow(/"share\/extension\/hstore--9.9.sql" refused: it comes after the end-of-archive marker/);
    expect(await listTree(root)).toEqual(before);
  });

  /** A bundle a hostile store could serve: extension `name` whose control file loads `library`, and that library. */
  const loadingBundle = (name: string, library: string, content: string) =>
    packTar([
      { name: `share/extension/${name}.control`, content: `default_version = '1.0'\nmodule_pathname = '$libdir/${library}'\n` },
      { name: `share/extension/${name}--1.0.sql`, content: "-- x\n" },
      { name: `lib/${library}.so`, content },
    ]);
  const installAs = (extension: string, bytes: Buffer) =>
    installBundle(chunksOf(bytes, 4096), { extension, sha256: sha256Of(bytes), dirs, maxBundleBytes: 1 << 30 });

  it("refuses a bundle whose file the Postgres install has, naming both owners, and leaves the install's file", async () => {
    await writeFile(path.join(dirs.pkglibdir, "hstore.so"), "the install's hstore");
    const before = await listTree(root);
    const attempt = installAs("shadow", await loadingBundle("shadow", "hstore", "shadow's hstore"));
    await expect(attempt).rejects.toThrow(FileOwnerConflictError);
    await expect(attempt).rejects.toMatchObject({
      code: Code.FailedPrecondition,
      message: expect.stringMatching(/files of extension "shadow" .*"lib\/hstore.so" belongs to the Postgres install/),
    });
    expect(await readFile(path.join(dirs.pkglibdir, "hstore.so"), "utf8")).toBe("the install's hstore");
    expect(await listTree(root)).toEqual(before);
  });

  it("refuses a bundle whose file another extension's bundle placed, naming both extensions", async () => {
    await installAs("alpha", await loadingBundle("alpha", "alpha", "alpha's library"));
    const attempt = installAs("beta", await loadingBundle("beta", "alpha", "beta's library"));
    await expect(attempt).rejects.toThrow(/files of extension "beta" .*"lib\/alpha.so" belongs to extension "alpha"/);
    expect(await readFile(path.join(dirs.pkglibdir, "alpha.so"), "utf8")).toBe("alpha's library");
    await expect(stat(path.join(dirs.sharedir, "extension", "beta.control"))).rejects.toThrow();
  });

  it("replaces the files of its own extension's earlier bundle", async () => {
    await installAs("alpha", await loadingBundle("alpha", "alpha", "alpha 1.0"));
    await installAs("alpha", await loadingBundle("alpha", "alpha", "alpha 1.1"));
    expect(await readFile(path.join(dirs.pkglibdir, "alpha.so"), "utf8")).toBe("alpha 1.1");
  });

  it("leaves in place a file the Postgres install already has with the same bytes, and places the rest", async () => {
    const library = await readFile("/usr/lib/postgresql/15/lib/hstore.so");
    await writeFile(path.join(dirs.pkglibdir, "hstore.so"), library);
    const installed = await install((await packContribBundle("hstore")).tar);
    expect(installed.files).not.toContain(path.join(dirs.pkglibdir, "hstore.so"));
    expect(installed.files).toContain(path.join(dirs.sharedir, "extension", "hstore.control"));
    expect(await readFile(path.join(dirs.pkglibdir, "hstore.so"))).toEqual(library);
  });
});
