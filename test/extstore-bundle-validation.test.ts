import { describe, expect, it } from "vitest";
import { inspectBundle, type BundleLimits } from "../src/extstore/inspect-bundle.js";
import { BundleRejectedError } from "../src/extstore/extension-store-errors.js";
import { rawTar, validBundleEntries, type RawEntry } from "./fixtures/extstore/raw-tar.js";

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
    const error = await rejection([...validBundleEntries("demo"), { name: "lib/bitcode/x.bc", content: "x" }, { name: "lib/bitcode", content: "y" }]);
    expect(error.entry).toBe("lib/bitcode");
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
    for (const name of ["share/extension/hstore.control", "share/extension/hstore--1.8.sql", "share/extension/demoextra.control"]) {
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
});
