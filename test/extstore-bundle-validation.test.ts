import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { execa } from "execa";
import { describe, expect, it } from "vitest";
import { inspectBundle, type BundleLimits } from "../src/extstore/inspect-bundle.js";
import { BundleRejectedError } from "../src/extstore/extension-store-errors.js";
import { rawEntry, rawTar, validBundleEntries, type RawEntry } from "./fixtures/extstore/raw-tar.js";

const limits: BundleLimits = { maxBundleBytes: 1 << 20, maxFileBytes: 64 << 10, maxControlFileBytes: 4096, maxEntries: 50 };

async function* chunksOf(bytes: Buffer, size = 700): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}

function inspect(entries: readonly RawEntry[], name = "demo") {
  return inspectBundle(chunksOf(rawTar(entries)), name, limits);
}

async function rejection(entries: readonly RawEntry[], name = "demo"): Promise<BundleRejectedError> {
  const error = await inspect(entries, name).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(BundleRejectedError);
  return error as BundleRejectedError;
}

/** What GNU tar makes of the bytes: `tar -tf` exit code and listed names. */
async function gnuTarList(bytes: Buffer): Promise<{ exitCode: number; names: string[] }> {
  const dir = await mkdtemp(join(tmpdir(), "pgmesh-gnu-tar-"));
  try {
    await writeFile(join(dir, "bundle.tar"), bytes);
    const result = await execa("tar", ["-tf", join(dir, "bundle.tar")], { reject: false });
    return { exitCode: result.exitCode ?? -1, names: result.stdout.split("\n").filter((line) => line !== "") };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe("ExtensionStore bundle validation", () => {
  it("accepts a bundle of lib/*.so and share/extension files and records its libraries and control files", async () => {
    const manifest = await inspect([
      ...validBundleEntries("demo"),
      { name: "share/extension/demo--1.0.control", content: "requires = 'hstore'\n" },
      { name: "lib/bitcode/demo/demo.bc", content: "bc" },
      { name: "share/tsearch_data/demo.stop", content: "a\nthe\n" },
    ]);
    expect(manifest.libraries).toEqual(["demo"]);
    expect(manifest.controlFiles.map((c) => c.fileName)).toEqual(["demo.control", "demo--1.0.control"]);
    expect(manifest.controlFiles[0]!.content).toContain("default_version = '1.0'");
  });

  it("accepts entry names that start with ./", async () => {
    const manifest = await inspect(validBundleEntries("demo").map((e) => ({ ...e, name: `./${e.name}` })));
    expect(manifest.libraries).toEqual(["demo"]);
  });

  it("rejects a path with .. that escapes the bundle, naming the entry", async () => {
    const error = await rejection([...validBundleEntries("demo"), { name: "lib/../../etc/cron.d/x", content: "x" }]);
    expect(error.rejection).toBe("invalid");
    expect(error.entry).toBe("lib/../../etc/cron.d/x");
    expect(error.message).toMatch(/"\.\." segments are not allowed/);
  });

  it("rejects an absolute path", async () => {
    const error = await rejection([...validBundleEntries("demo"), { name: "/etc/passwd", content: "x" }]);
    expect(error.entry).toBe("/etc/passwd");
    expect(error.message).toMatch(/absolute paths/);
  });

  it("rejects a symlink to /etc/passwd", async () => {
    const error = await rejection([
      ...validBundleEntries("demo"),
      { name: "share/extension/passwd", type: "symlink", linkname: "/etc/passwd" },
    ]);
    expect(error.entry).toBe("share/extension/passwd");
    expect(error.message).toMatch(/symbolic link to "\/etc\/passwd"/);
  });

  it("rejects a symlink even when it stays inside the bundle", async () => {
    const error = await rejection([
      ...validBundleEntries("demo"),
      { name: "lib/demo2.so", type: "symlink", linkname: "demo.so" },
    ]);
    expect(error.message).toMatch(/regular files and directories only/);
  });

  it("rejects a hard link", async () => {
    const error = await rejection([...validBundleEntries("demo"), { name: "lib/x.so", type: "link", linkname: "lib/demo.so" }]);
    expect(error.message).toMatch(/hard link/);
  });

  it("rejects a device node", async () => {
    const error = await rejection([...validBundleEntries("demo"), { name: "lib/null", type: "character-device" }]);
    expect(error.entry).toBe("lib/null");
    expect(error.message).toMatch(/character-device entry/);
  });

  it("rejects a fifo", async () => {
    const error = await rejection([...validBundleEntries("demo"), { name: "lib/pipe", type: "fifo" }]);
    expect(error.message).toMatch(/fifo entry/);
  });

  it("rejects a huge declared size before reading the bytes", async () => {
    // 64 GiB declared, a few bytes present: the header alone must be refused.
    const error = await rejection([...validBundleEntries("demo"), { name: "lib/huge.so", content: "tiny", declaredSize: 64 * 2 ** 30 }]);
    expect(error.rejection).toBe("too_large");
    expect(error.entry).toBe("lib/huge.so");
    expect(error.message).toMatch(/declares 68719476736 bytes; the limit per file is 65536 bytes/);
  });

  it("rejects a file over the per-file limit", async () => {
    const error = await rejection([...validBundleEntries("demo"), { name: "lib/big.so", content: Buffer.alloc(limits.maxFileBytes + 1) }]);
    expect(error.rejection).toBe("too_large");
  });

  it("rejects duplicate names, also when spelt ./name", async () => {
    const error = await rejection([...validBundleEntries("demo"), { name: "./lib/demo.so", content: "other" }]);
    expect(error.entry).toBe("./lib/demo.so");
    expect(error.message).toMatch(/names must be unique/);
  });

  it("rejects a file where the bundle also has a folder of that name", async () => {
    const error = await rejection([...validBundleEntries("demo"), { name: "lib/bitcode/demo/x.bc", content: "x" }, { name: "lib/bitcode/demo", content: "y" }]);
    expect(error.entry).toBe("lib/bitcode/demo");
  });

  it("rejects files outside lib/ and share/extension/", async () => {
    for (const name of ["etc/passwd", "share/postgres.bki", "share/timezonesets/Default", "bin/postgres", "demo.so"]) {
      const error = await rejection([...validBundleEntries("demo"), { name, content: "x" }]);
      expect(error.entry).toBe(name);
      expect(error.message).toMatch(/outside the bundle layout/);
    }
  });

  it("rejects a folder under share/extension/", async () => {
    const error = await rejection([...validBundleEntries("demo"), { name: "share/extension/sub/x.sql", content: "x" }]);
    expect(error.entry).toBe("share/extension/sub/x.sql");
  });

  it("rejects a bundle without the control file named for the extension", async () => {
    const error = await rejection(validBundleEntries("demo").filter((e) => !e.name.endsWith(".control")));
    expect(error.entry).toBeUndefined();
    expect(error.message).toMatch(/no share\/extension\/demo\.control/);
  });

  it("rejects another extension's control file or script, so no bundle can shadow another extension", async () => {
    for (const name of [
      "share/extension/hstore.control",
      "share/extension/hstore--1.8.sql",
      "share/extension/demoextra.control",
      "share/extension/demo.pgmesh-installed",
    ]) {
      const error = await rejection([...validBundleEntries("demo"), { name, content: "x" }]);
      expect(error.entry).toBe(name);
      expect(error.message).toMatch(/does not belong to extension "demo"/);
    }
  });

  it("rejects a truncated tar", async () => {
    const bytes = rawTar(validBundleEntries("demo"));
    const error = await inspectBundle(chunksOf(bytes.subarray(0, 1200)), "demo", limits).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BundleRejectedError);
    expect((error as Error).message).toMatch(/not a valid tar stream/);
  });

  it("rejects bytes that are not a tar at all", async () => {
    const error = await inspectBundle(chunksOf(Buffer.alloc(4096, 0x41)), "demo", limits).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BundleRejectedError);
  });

  it("rejects more entries than the limit", async () => {
    const many = Array.from({ length: limits.maxEntries }, (_, i) => ({ name: `share/extension/demo--f${i}.sql`, content: "x" }));
    const error = await rejection([...validBundleEntries("demo"), ...many]);
    expect(error.rejection).toBe("too_large");
  });

  it("rejects an entry after the end-of-archive marker, which GNU tar does not list", async () => {
    const hidden: RawEntry = { name: "share/extension/demo--9.9.sql", content: "-- seen by no tar -t\n" };
    const bytes = Buffer.concat([rawTar(validBundleEntries("demo")), rawEntry(hidden), Buffer.alloc(1024)]);
    const listed = await gnuTarList(bytes);
    expect(listed.names).toHaveLength(validBundleEntries("demo").length);
    expect(listed.names).not.toContain(hidden.name);
    const error = await inspectBundle(chunksOf(bytes), "demo", limits).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BundleRejectedError);
    expect((error as BundleRejectedError).rejection).toBe("invalid");
    expect((error as BundleRejectedError).entry).toBe(hidden.name);
    expect((error as Error).message).toMatch(/after the end-of-archive marker \(the zero block at byte \d+\)/);
  });

  it("rejects a negative base-256 size, which GNU tar cannot read", async () => {
    const negative: RawEntry = { name: "share/extension/demo--2.0.sql", sizeField: Buffer.alloc(12, 0xff) };
    const bytes = rawTar([...validBundleEntries("demo"), negative]);
    expect((await gnuTarList(bytes)).exitCode).not.toBe(0);
    const error = await rejection([...validBundleEntries("demo"), negative]);
    expect(error.rejection).toBe("invalid");
    expect(error.entry).toBe(negative.name);
    expect(error.message).toMatch(/negative base-256/);
  });

  it.each(["gnu", "posix"])("accepts a bundle GNU tar wrote in %s format, long names and record padding included", async (format) => {
    const dir = await mkdtemp(join(tmpdir(), "pgmesh-gnu-tar-"));
    try {
      const longName = `lib/bitcode/demo/${"deep/".repeat(30)}demo.bc`;
      for (const entry of [...validBundleEntries("demo"), { name: longName, content: "bc" }]) {
        if (entry.type === "directory") continue;
        await mkdir(dirname(join(dir, "tree", entry.name)), { recursive: true });
        await writeFile(join(dir, "tree", entry.name), entry.content ?? "");
      }
      await execa("tar", [`--format=${format}`, "-cf", join(dir, "bundle.tar"), "-C", join(dir, "tree"), "lib", "share"]);
      const bytes = await readFile(join(dir, "bundle.tar"));
      expect(bytes.length % 10240).toBe(0);
      const manifest = await inspectBundle(chunksOf(bytes), "demo", limits);
      expect(manifest.libraries).toEqual(["demo"]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  /** A bundle of extension `name` whose control file loads `modulePath`, plus `extra`. */
  const bundleLoading = (name: string, modulePath: string, extra: RawEntry[]): RawEntry[] => [
    { name: `share/extension/${name}.control`, content: `default_version = '1.0'\nmodule_pathname = '${modulePath}'\n` },
    { name: `share/extension/${name}--1.0.sql`, content: "-- x\n" },
    ...extra,
  ];

  it.each([
    ["another extension's library", "lib/hstore.so"],
    ["another extension's bitcode", "lib/bitcode/hstore/hstore_io.bc"],
    ["a library prefixed with the extension's name", "lib/shadow_hstore.so"],
  ])("rejects %s, so no approved bundle replaces it on computes", async (_, file) => {
    const error = await rejection(bundleLoading("shadow", "$libdir/shadow", [{ name: file, content: "x" }]), "shadow");
    expect(error.rejection).toBe("invalid");
    expect(error.entry).toBe(file);
    expect(error.message).toMatch(/is not extension "shadow"'s/);
  });

  it("rejects a library of the Postgres install even when module_pathname names it", async () => {
    const error = await rejection(bundleLoading("shadow", "$libdir/plpgsql", [{ name: "lib/plpgsql.so", content: "x" }]), "shadow");
    expect(error.entry).toBe("lib/plpgsql.so");
    expect(error.message).toMatch(/library "plpgsql" is part of the Postgres install/);
  });

  it("rejects a bundle of the Postgres install's own extension plpgsql", async () => {
    const error = await rejection(bundleLoading("plpgsql", "$libdir/plpgsql", []), "plpgsql");
    expect(error.entry).toBe("share/extension/plpgsql.control");
    expect(error.message).toMatch(/extension "plpgsql" is part of the Postgres install/);
  });

  it("rejects a file under lib/ that is neither a library nor its bitcode", async () => {
    const error = await rejection([...validBundleEntries("demo"), { name: "lib/pkgconfig/demo.pc", content: "x" }]);
    expect(error.entry).toBe("lib/pkgconfig/demo.pc");
    expect(error.message).toMatch(/lib\/ holds only libraries/);
  });

  it.each([
    ["another extension's dictionary", "shadow", "share/tsearch_data/unaccent.rules", /does not belong to extension "shadow"/],
    ["a stop-word file of the Postgres install", "english", "share/tsearch_data/english.stop", /is a file of the Postgres install/],
    ["another extension's contrib folder", "shadow", "share/contrib/postgis-3.4/legacy.sql", /does not belong to extension "shadow"/],
  ])("rejects %s under share/", async (_, name, file, message) => {
    const error = await rejection([...validBundleEntries(name), { name: file, content: "x" }], name);
    expect(error.entry).toBe(file);
    expect(error.message).toMatch(message);
  });

  it("accepts what real packages carry: a library named by module_pathname, versioned libraries and folders, own data files", async () => {
    const intarray = await inspect(bundleLoading("intarray", "$libdir/_int", [{ name: "lib/_int.so", content: "x" }]), "intarray");
    expect(intarray.libraries).toEqual(["_int"]);
    const postgis = await inspect(
      bundleLoading("postgis", "$libdir/postgis-3", [
        { name: "lib/postgis-3.so", content: "x" },
        { name: "lib/bitcode/postgis-3.index.bc", content: "x" },
        { name: "lib/bitcode/postgis-3/lwgeom.bc", content: "x" },
        { name: "share/contrib/postgis-3.4/spatial_ref_sys.sql", content: "x" },
      ]),
      "postgis",
    );
    expect(postgis.libraries).toEqual(["postgis-3"]);
    const unaccent = await inspect([...validBundleEntries("unaccent"), { name: "share/tsearch_data/unaccent.rules", content: "x" }], "unaccent");
    expect(unaccent.libraries).toEqual(["unaccent"]);
  });
});
