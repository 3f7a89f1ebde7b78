import { access, chmod, copyFile, mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ReviewDecision, Visibility } from "../gen/pgmesh/extensionstore/v1/extension_store_pb.js";
import {
  PackError,
  packExtension,
  packSourceFromDeb,
  packSourceFromPgConfig,
  publishBundleFile,
  type PackedBundle,
} from "../src/extstore/index.js";
import { freePort } from "../src/net/free-port.js";
import { initdb, resolveUnprivilegedUser, startPostgres, type RunningPostgres } from "../src/pg/index.js";
import { collectDownload, sha256Of, startExtStoreHarness, type ExtStoreHarness } from "./fixtures/extstore/extstore-harness.js";
import { createScratchInstall, extractBundle, removeExtension, type ScratchInstall } from "./fixtures/extstore/scratch-postgres.js";

/**
 * postgresql-15-hypopg is not installed here: its package file, which
 * scripts/setup.sh downloads into .pgmesh/debs, so the test needs no network;
 * downloaded into `scratch` only when setup has not run.
 */
async function hypopgDeb(scratch: string): Promise<string> {
  const isHypopg = (file: string) => file.startsWith("postgresql-15-hypopg_") && file.endsWith(".deb");
  const setupDir = join(import.meta.dirname, "..", ".pgmesh", "debs");
  const fromSetup = (await readdir(setupDir).catch(() => [])).find(isHypopg);
  if (fromSetup !== undefined) return join(setupDir, fromSetup);
  await mkdir(scratch, { recursive: true });
  await execa("apt-get", ["download", "postgresql-15-hypopg"], { cwd: scratch });
  return join(scratch, (await readdir(scratch)).find(isHypopg)!);
}

describe("pgmesh-pack-extension with real Debian-built extensions", () => {
  let root: string;
  let debPath: string;
  let h: ExtStoreHarness;
  let install: ScratchInstall;
  let postgres: RunningPostgres;

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), "pgmesh-pack-"));
    await chmod(root, 0o755);
    debPath = await hypopgDeb(join(root, "debs"));
    h = await startExtStoreHarness("local");
    install = await createScratchInstall(join(root, "pg"));
    await removeExtension(install, "hstore"); // so only the bundle can provide it
    const user = await resolveUnprivilegedUser();
    await initdb({ binaries: install.binaries, dataDir: join(root, "data"), user, extraArgs: ["--no-sync"] });
    postgres = await startPostgres({
      binaries: install.binaries,
      dataDir: join(root, "data"),
      user,
      port: await freePort(),
      socketDir: join(root, "sock"),
      logFile: join(root, "pg.log"),
    });
  });
  afterAll(async () => {
    await postgres?.stop("immediate");
    await h?.stop();
    await rm(root, { recursive: true, force: true });
  });

  async function sql(text: string): Promise<pg.QueryResult> {
    const client = new pg.Client({ connectionString: postgres.connectionUri() });
    await client.connect();
    try {
      return await client.query(text);
    } finally {
      await client.end();
    }
  }

  it("packs the same .deb into byte-identical bundles", async () => {
    const a = await packExtension(await packSourceFromDeb(debPath, 15), join(root, "a.tar"));
    const b = await packExtension(await packSourceFromDeb(debPath, 15), join(root, "b.tar"));
    expect(a.name).toBe("hypopg");
    expect(a.sha256).toBe(b.sha256);
  });

  it("refuses to pack an extension that is not installed", async () => {
    await expect(packSourceFromPgConfig("no_such_extension")).rejects.toThrow(PackError);
  });

  it("leaves out a library of another extension that the extension's scripts load", async () => {
    const extensionDir = join(install.sharedir, "extension");
    await writeFile(join(extensionDir, "shadow.control"), "default_version = '1.0'\nmodule_pathname = '$libdir/shadow'\n");
    await writeFile(join(extensionDir, "shadow--1.0.sql"), "CREATE FUNCTION shadow_citext() RETURNS void AS '$libdir/citext' LANGUAGE C;\n");
    await copyFile(join(install.pkglibdir, "citext.so"), join(install.pkglibdir, "shadow.so"));
    const source = await packSourceFromPgConfig("shadow", join(install.binaries.binDir, "pg_config"));
    const paths = source.files.map((f) => f.path);
    await source.dispose();
    expect(paths).toContain("lib/shadow.so");
    expect(paths).not.toContain("lib/citext.so");
  });

  it("refuses to pack plpgsql, which is part of the Postgres install", async () => {
    await expect(packSourceFromPgConfig("plpgsql", join(install.binaries.binDir, "pg_config"))).rejects.toThrow(
      /cannot pack extension "plpgsql": extension "plpgsql" is part of the Postgres install/,
    );
  });

  it("packs hypopg (.deb) and hstore (pg_config), serves them through a download token, and CREATE EXTENSION works on PG 15", async () => {
    await expect(sql("CREATE EXTENSION hstore")).rejects.toThrow(/extension "hstore" is not available|could not open extension control file/);
    await expect(sql("CREATE EXTENSION hypopg")).rejects.toThrow(/extension "hypopg" is not available|could not open extension control file/);

    const bundles: PackedBundle[] = [
      await packExtension(await packSourceFromDeb(debPath, 15), join(root, "hypopg.tar")),
      await packExtension(await packSourceFromPgConfig("hstore"), join(root, "hstore.tar")),
    ];
    for (const bundle of bundles) {
      const { extension } = await publishBundleFile(h.admin, bundle, {
        pgMajors: [15],
        visibility: Visibility.PUBLIC,
        license: "PostgreSQL",
      });
      expect(extension).toMatchObject({ name: bundle.name, sha256: bundle.sha256, libraries: [bundle.name] });
      await h.admin.reviewExtension({ name: bundle.name, sha256: bundle.sha256, decision: ReviewDecision.APPROVE });
    }
    const exported = JSON.parse(
      (await h.controlPlane.exportRemoteExtensions({ tenantId: "t1", pgMajor: 15 })).remoteExtensionsJson,
    );
    expect(exported.library_index).toMatchObject({ hypopg: "hypopg", hstore: "hstore" });
    expect(exported.extension_data.hstore.control_data["hstore.control"]).toContain("module_pathname = '$libdir/hstore'");

    const { token } = await h.controlPlane.issueDownloadToken({
      tenantId: "t1",
      endpointId: "ep1",
      sha256: bundles.map((b) => b.sha256),
    });
    for (const bundle of bundles) {
      const download = await collectDownload(h.anonymous.downloadBundle({ sha256: bundle.sha256, downloadToken: token }));
      expect(sha256Of(download.bytes)).toBe(bundle.sha256);
      await extractBundle(download.bytes, install);
    }

    await sql("CREATE EXTENSION hypopg");
    await sql("CREATE TABLE t (a int)");
    const hypo = await sql("SELECT indexname FROM hypopg_create_index('CREATE INDEX ON t (a)')");
    expect(hypo.rows[0].indexname).toMatch(/btree_t_a/);
    await sql("CREATE EXTENSION hstore");
    const hs = await sql("SELECT ('a=>1, b=>2'::hstore) -> 'b' AS b");
    expect(hs.rows[0].b).toBe("2");

    // The system install was never touched.
    await expect(access("/usr/share/postgresql/15/extension/hypopg.control")).rejects.toThrow();
    await expect(access("/usr/share/postgresql/15/extension/hstore.control")).resolves.toBeUndefined();
  });
});
