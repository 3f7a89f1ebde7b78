import { createHash } from "node:crypto";
import { chown, mkdtemp, readFile, realpath, rm, stat } from "node:fs/promises";
import path from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildBundle, type BundleManifest, type VersionManifest } from "../src/bundle/index.js";
import { resolveUnprivilegedUser, type OsUser } from "../src/pg/index.js";
import { RedoProcess } from "../src/walredo/redo-process.js";
import { ensureTestBundle } from "./bundle-fixture.js";

let bundleDir: string;
let manifest: BundleManifest;
let v15: VersionManifest;
let user: OsUser;

beforeAll(async () => {
  bundleDir = await ensureTestBundle();
  manifest = JSON.parse(await readFile(path.join(bundleDir, "manifest.json"), "utf8")) as BundleManifest;
  v15 = manifest.versions["15"]!;
  user = await resolveUnprivilegedUser();
});

function entry(relPath: string) {
  return v15.entries.find((e) => e.path === relPath);
}

describe("bundle manifest", () => {
  it("records the Postgres, ICU and glibc versions the bundle was built from", async () => {
    const { stdout } = await execa("/usr/lib/postgresql/15/bin/postgres", ["--version"]);
    expect(v15.postgresVersion).toBe(stdout.trim());
    const icu = /libicuuc\.so\.([\d.]+)$/.exec(await realpath("/usr/lib/x86_64-linux-gnu/libicuuc.so.72"))![1];
    expect(v15.icuVersion).toBe(icu);
    expect(v15.glibcVersion).toBe((await execa("getconf", ["GNU_LIBC_VERSION"])).stdout.replace("glibc ", ""));
    expect(v15.packages["postgresql-15"]).toMatch(/^15\./);
  });

  it("lists every file with its size and sha256", async () => {
    const walredo = entry("usr/lib/postgresql/15/lib/pgmesh_walredo.so");
    expect(walredo?.type).toBe("file");
    const bytes = await readFile(path.join(bundleDir, "v15", walredo!.path));
    expect(walredo).toMatchObject({ size: bytes.length, sha256: createHash("sha256").update(bytes).digest("hex") });
  });

  it("holds the programs, the C modules, contrib, time zones and the whole library closure", () => {
    for (const file of [
      "bin/postgres", "bin/sh", "usr/lib/postgresql/15/bin/postgres", "usr/lib/postgresql/15/bin/initdb",
      "usr/lib/postgresql/15/bin/pg_resetwal", "usr/lib/postgresql/15/bin/pg_ctl",
      "usr/lib/postgresql/15/lib/pgmesh_walredo.so", "usr/lib/postgresql/15/lib/pg_stat_statements.so",
      "usr/lib/postgresql/15/lib/hstore.so", "usr/share/postgresql/15/extension/hstore.control",
      "usr/share/postgresql/15/postgres.bki", "usr/share/zoneinfo/Europe/Paris",
      "lib64/ld-linux-x86-64.so.2", "usr/lib/x86_64-linux-gnu/libc.so.6", "usr/lib/x86_64-linux-gnu/libicuuc.so.72",
      "usr/lib/x86_64-linux-gnu/libssl.so.3", "etc/passwd",
    ]) {
      expect(entry(file)?.type, file).toBe("file");
    }
    expect(entry("bin/initdb")).toMatchObject({ type: "symlink", target: "../usr/lib/postgresql/15/bin/initdb" });
    expect(entry("lib")).toMatchObject({ type: "symlink", target: "usr/lib/postgresql/15/lib" });
    expect(entry("share")).toMatchObject({ type: "symlink", target: "usr/share/postgresql/15" });
    expect(entry("dev/null")?.type).toBe("device");
    expect(v15.modules).toContain("walredo");
  });

  it("keeps an up-to-date bundle as it is", async () => {
    const before = await stat(path.join(bundleDir, "manifest.json"));
    const again = await buildBundle({ outDir: bundleDir });
    expect(again.changed).toBe(false);
    expect((await stat(path.join(bundleDir, "manifest.json"))).mtimeMs).toBe(before.mtimeMs);
    expect(again.manifest.inputFingerprint).toBe(manifest.inputFingerprint);
  });
});

describe("bundle launcher", () => {
  const launcher = () => path.join(bundleDir, "launcher");

  it("runs a program of a version with the bundle's own share and lib directories", async () => {
    const { stdout } = await execa(launcher(), ["15", "pg_config", "--sharedir", "--pkglibdir"]);
    expect(stdout.split("\n")).toEqual([
      path.join(bundleDir, "v15/usr/share/postgresql/15"),
      path.join(bundleDir, "v15/usr/lib/postgresql/15/lib"),
    ]);
  });

  it("passes other arguments to the real postgres", async () => {
    const { stdout } = await execa(launcher(), ["15", "postgres", "--version"]);
    expect(stdout).toBe(v15.postgresVersion);
  });

  it("refuses a version the bundle does not hold", async () => {
    const result = await execa(launcher(), ["14", "initdb"], { reject: false });
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toMatch(/this bundle has no PostgreSQL 14/);
  });

  it("refuses a program given as a path", async () => {
    const result = await execa(launcher(), ["15", "../../bin/sh"], { reject: false });
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(/not a plain program name/);
  });
});

describe("bundle under chroot (nothing from the host but the kernel)", () => {
  let scratch: string;
  let inside: string;
  beforeAll(async () => {
    scratch = await mkdtemp(path.join(bundleDir, "v15/tmp/bundle-test-"));
    await chown(scratch, user.uid, user.gid);
    inside = `/tmp/${path.basename(scratch)}`;
  });
  afterAll(async () => {
    await rm(scratch, { recursive: true, force: true });
  });

  const chroot = (args: readonly string[], input?: string) =>
    execa("chroot", [`--userspec=${user.uid}:${user.gid}`, "--groups=", path.join(bundleDir, "v15"), ...args], {
      env: { PATH: "/usr/sbin:/usr/bin:/bin" }, extendEnv: false, reject: false, ...(input === undefined ? {} : { input }),
    });

  it("runs initdb as the unprivileged user, then a single-user backend with contrib and time zones", async () => {
    const init = await chroot(["/bin/initdb", "-D", `${inside}/data`, "--no-sync", "-U", "postgres", "--locale=C.UTF-8"]);
    expect(init.stderr).not.toMatch(/ERROR|FATAL|could not/);
    expect(init.exitCode).toBe(0);
    expect((await readFile(path.join(scratch, "data/PG_VERSION"), "utf8")).trim()).toBe("15");

    const session = await chroot(["/bin/postgres", "--single", "-D", `${inside}/data`, "-c", "dynamic_shared_memory_type=mmap", "postgres"], [
      "CREATE EXTENSION hstore",
      "SELECT ('a=>fromhstore'::hstore -> 'a') AS h",
      "SELECT to_char(timestamptz '2024-07-01 12:00+00' AT TIME ZONE 'Europe/Paris', 'HH24:MI') AS paris",
      "",
    ].join("\n"));
    expect(session.stderr).not.toMatch(/ERROR|FATAL/);
    expect(session.stdout).toMatch(/h = "fromhstore"/);
    expect(session.stdout).toMatch(/paris = "14:00"/);
  });

  it("runs a walredo process", async () => {
    const redo = await RedoProcess.start({ bundleDir, chroot: true, user: { uid: user.uid, gid: user.gid } });
    try {
      const base = new Uint8Array(8192).map((_, i) => i % 251);
      const page = await redo.applyRecords({ tag: { forkNumber: 0, spcNode: 1663, dbNode: 5, relNode: 16384, blockNumber: 7 }, baseImage: base, records: [] });
      expect(Buffer.from(page).equals(Buffer.from(base))).toBe(true);
    } finally {
      redo.kill();
      await redo.exited;
    }
  });
});
