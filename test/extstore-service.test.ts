import { randomBytes } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ReviewDecision,
  ReviewState,
  Visibility,
} from "../gen/pgmesh/extensionstore/v1/extension_store_pb.js";
import { signDownloadToken } from "../src/extstore/index.js";
import {
  collectDownload,
  publicHeader,
  publishRequests,
  sha256Of,
  startExtStoreHarness,
  type Backend,
  type ExtStoreHarness,
  type HeaderInit,
} from "./fixtures/extstore/extstore-harness.js";
import { rawTar, validBundleEntries, type RawEntry } from "./fixtures/extstore/raw-tar.js";

/** The ConnectError a call failed with (fails the test when it succeeded). */
async function failure(call: Promise<unknown>): Promise<ConnectError> {
  const outcome = await call.then(
    () => undefined,
    (error: unknown) => error,
  );
  expect(outcome, "the call should have failed").toBeInstanceOf(ConnectError);
  return outcome as ConnectError;
}

describe.each<Backend>(["local", "s3"])("ExtensionStore on the %s blob store", (backend) => {
  let h: ExtStoreHarness;
  let counter = 0;
  /** A fresh, unique, valid bundle of extension `name`. */
  const bundle = (name: string, extra: RawEntry[] = []) => rawTar([...validBundleEntries(name, `#${counter++}`), ...extra]);

  beforeAll(async () => {
    h = await startExtStoreHarness(backend);
  });
  afterAll(async () => {
    await h?.stop();
  });

  const publish = (header: HeaderInit, bytes: Uint8Array) => h.admin.publishExtension(publishRequests(header, bytes));
  const approve = (name: string, sha256: string) =>
    h.admin.reviewExtension({ name, sha256, decision: ReviewDecision.APPROVE });
  async function publishApproved(name: string, header: HeaderInit = publicHeader(name), extra: RawEntry[] = []) {
    const bytes = bundle(name, extra);
    const { extension } = await publish(header, bytes);
    await approve(name, extension!.sha256);
    return { bytes, sha256: extension!.sha256 };
  }
  const token = (tenantId: string, sha256: string[]) =>
    h.controlPlane.issueDownloadToken({ tenantId, endpointId: "ep1", sha256 }).then((r) => r.token);

  /** Asserts that a refused call changes nothing in the blob store. */
  async function refusedWithoutChange(call: () => Promise<unknown>, code: Code, message?: RegExp): Promise<ConnectError> {
    const before = await h.snapshot();
    const error = await failure(call());
    expect(Code[error.code], error.rawMessage).toBe(Code[code]);
    if (message) expect(error.rawMessage).toMatch(message);
    expect(await h.snapshot()).toEqual(before);
    return error;
  }

  describe("publish", () => {
    it("stores a new bundle as pending with its sha256, size, libraries and control files", async () => {
      const bytes = bundle("alpha");
      const { extension, alreadyExisted } = await publish(publicHeader("alpha", { description: "first" }), bytes);
      expect(alreadyExisted).toBe(false);
      expect(extension).toMatchObject({
        name: "alpha",
        version: "1.0",
        sha256: sha256Of(bytes),
        size: BigInt(bytes.length),
        pgMajors: [15],
        libraries: ["alpha"],
        controlFiles: ["alpha.control"],
        reviewState: ReviewState.PENDING,
        visibility: Visibility.PUBLIC,
        description: "first",
      });
      const keys = (await h.snapshot()).map((k) => k.split(" ")[0]);
      const prefix = `extensions/alpha/sha256-${sha256Of(bytes)}/`;
      expect(keys).toEqual(expect.arrayContaining([`${prefix}bundle.tar`, `${prefix}meta.json`, `${prefix}control/alpha.control`]));
    });

    it("is idempotent for the same bytes", async () => {
      const bytes = bundle("beta");
      const first = await publish(publicHeader("beta"), bytes);
      const before = await h.snapshot();
      const again = await publish(publicHeader("beta"), bytes);
      expect(again.alreadyExisted).toBe(true);
      expect(again.extension).toEqual(first.extension);
      expect(await h.snapshot()).toEqual(before);
    });

    it("uses the header's version label over the control file's default_version", async () => {
      const { extension } = await publish(publicHeader("gamma", { version: "1.0-pgmesh1" }), bundle("gamma"));
      expect(extension!.version).toBe("1.0-pgmesh1");
    });

    it.each<[string, RawEntry]>([
      ["a path traversal", { name: "share/extension/../../../../etc/cron.d/evil", content: "x" }],
      ["a symlink to /etc/passwd", { name: "share/extension/passwd", type: "symlink", linkname: "/etc/passwd" }],
      ["a device node", { name: "lib/mem", type: "character-device" }],
      ["a duplicate name", { name: "lib/evil.so", content: "x" }],
      ["another extension's library", { name: "lib/hstore.so", content: "x" }],
      ["a library of the Postgres install", { name: "lib/plpgsql.so", content: "x" }],
    ])("refuses %s with INVALID_ARGUMENT naming the entry and stores nothing", async (_, bad) => {
      const extra = bad.name === "lib/evil.so" ? [bad, { ...bad, content: "y" }] : [bad];
      const error = await refusedWithoutChange(
        () => publish(publicHeader("evil"), bundle("evil", extra)),
        Code.InvalidArgument,
      );
      expect(error.rawMessage).toContain(JSON.stringify(bad.name));
      expect(error.rawMessage).toMatch(/nothing was stored/);
    });

    it("refuses a library that module_pathname names after another extension published here, and stores nothing", async () => {
      await publishApproved("owned");
      const shadow = rawTar([
        { name: "share/extension/shadow.control", content: "default_version = '1.0'\nmodule_pathname = '$libdir/owned'\n" },
        { name: "share/extension/shadow--1.0.sql", content: "-- shadow\n" },
        { name: "lib/owned.so", content: "not owned's library" },
      ]);
      await refusedWithoutChange(
        () => publish(publicHeader("shadow"), shadow),
        Code.InvalidArgument,
        /"lib\/owned.so" refused: library "owned" belongs to extension "owned", published in this store/,
      );
    });

    it("refuses tar data after the end-of-archive marker with INVALID_ARGUMENT, and stores nothing", async () => {
      const hidden = rawTar([{ name: "share/extension/trailer--2.0.sql", content: "-- after the end\n" }]);
      await refusedWithoutChange(
        () => publish(publicHeader("trailer"), Buffer.concat([bundle("trailer"), hidden])),
        Code.InvalidArgument,
        /"share\/extension\/trailer--2.0.sql" refused: it comes after the end-of-archive marker/,
      );
    });

    it("refuses a huge declared size with RESOURCE_EXHAUSTED before reading it, and stores nothing", async () => {
      await refusedWithoutChange(
        () => publish(publicHeader("huge"), bundle("huge", [{ name: "lib/huge_data.so", content: "x", declaredSize: 2 ** 40 }])),
        Code.ResourceExhausted,
        /"lib\/huge_data.so".*declares 1099511627776 bytes/,
      );
    });

    it("refuses a wrong declared sha256 and stores nothing", async () => {
      await refusedWithoutChange(
        () => publish(publicHeader("delta", { sha256: "0".repeat(64) }), bundle("delta")),
        Code.InvalidArgument,
        /declares 0{64}/,
      );
    });

    it("refuses a bundle without the extension's control file", async () => {
      await refusedWithoutChange(() => publish(publicHeader("epsilon"), bundle("zeta")), Code.InvalidArgument, /epsilon\.control/);
    });

    it("refuses a header without visibility or pg_majors", async () => {
      await refusedWithoutChange(
        () => publish({ name: "eta", pgMajors: [15] }, bundle("eta")),
        Code.InvalidArgument,
        /visibility is required/,
      );
      await refusedWithoutChange(
        () => publish({ name: "eta", visibility: Visibility.PUBLIC }, bundle("eta")),
        Code.InvalidArgument,
        /pg_majors is empty/,
      );
    });

    it("refuses publish without admin scope (PERMISSION_DENIED) and without a token (UNAUTHENTICATED)", async () => {
      const bytes = bundle("theta");
      await refusedWithoutChange(
        () => h.controlPlane.publishExtension(publishRequests(publicHeader("theta"), bytes)),
        Code.PermissionDenied,
      );
      await refusedWithoutChange(() => h.compute.publishExtension(publishRequests(publicHeader("theta"), bytes)), Code.PermissionDenied);
      await refusedWithoutChange(
        () => h.anonymous.publishExtension(publishRequests(publicHeader("theta"), bytes)),
        Code.Unauthenticated,
      );
    });
  });

  describe("review and catalog", () => {
    it("approves a pending bundle once; a different decision later is FAILED_PRECONDITION", async () => {
      const { extension } = await publish(publicHeader("iota"), bundle("iota"));
      const sha256 = extension!.sha256;
      const approved = await approve("iota", sha256);
      expect(approved.extension!.reviewState).toBe(ReviewState.APPROVED);
      expect((await approve("iota", sha256)).extension!.reviewState).toBe(ReviewState.APPROVED);
      await refusedWithoutChange(
        () => h.admin.reviewExtension({ name: "iota", sha256, decision: ReviewDecision.REJECT, reason: "late" }),
        Code.FailedPrecondition,
        /already approved/,
      );
    });

    it("refuses review by a control_plane token", async () => {
      const { extension } = await publish(publicHeader("kappa"), bundle("kappa"));
      await refusedWithoutChange(
        () => h.controlPlane.reviewExtension({ name: "kappa", sha256: extension!.sha256, decision: ReviewDecision.APPROVE }),
        Code.PermissionDenied,
      );
    });

    it("lists by name then publish time, filtered by major and review state, in pages", async () => {
      const a = await publish(publicHeader("lambda", { pgMajors: [15] }), bundle("lambda"));
      const b = await publish(publicHeader("lambda", { pgMajors: [16] }), bundle("lambda"));
      const c = await publish(publicHeader("lambda", { pgMajors: [15, 16] }), bundle("lambda"));
      await approve("lambda", c.extension!.sha256);
      const all = await h.controlPlane.listExtensions({ name: "lambda" });
      expect(all.extensions.map((e) => e.sha256)).toEqual([a, b, c].map((r) => r.extension!.sha256));
      const for16 = await h.controlPlane.listExtensions({ name: "lambda", pgMajor: 16 });
      expect(for16.extensions.map((e) => e.sha256)).toEqual([b, c].map((r) => r.extension!.sha256));
      const approved = await h.admin.listExtensions({ name: "lambda", reviewState: ReviewState.APPROVED });
      expect(approved.extensions.map((e) => e.sha256)).toEqual([c.extension!.sha256]);
      const page1 = await h.controlPlane.listExtensions({ name: "lambda", pageSize: 2 });
      expect(page1.extensions).toHaveLength(2);
      const page2 = await h.controlPlane.listExtensions({ name: "lambda", pageSize: 2, pageToken: page1.nextPageToken });
      expect(page2.extensions.map((e) => e.sha256)).toEqual([c.extension!.sha256]);
      expect(page2.nextPageToken).toBe("");
    });

    it("gets an extension with every version, oldest first; NOT_FOUND for an unknown one", async () => {
      const first = await publish(publicHeader("mu"), bundle("mu"));
      const second = await publish(publicHeader("mu"), bundle("mu"));
      const { versions } = await h.controlPlane.getExtension({ name: "mu" });
      expect(versions.map((v) => v.sha256)).toEqual([first.extension!.sha256, second.extension!.sha256]);
      expect(Code[(await failure(h.controlPlane.getExtension({ name: "nosuch" }))).code]).toBe("NotFound");
    });

    it("refuses the catalog to a compute token", async () => {
      expect(Code[(await failure(h.compute.listExtensions({}))).code]).toBe("PermissionDenied");
    });
  });

  describe("grants, index and export", () => {
    it("shows a private extension only to a granted tenant, until revoked", async () => {
      const { sha256 } = await publishApproved("nu", publicHeader("nu", { visibility: Visibility.PRIVATE }));
      const names = async (tenantId: string) =>
        (await h.controlPlane.getComputeIndex({ tenantId, pgMajor: 15 })).extensions.map((e) => e.name);
      expect(await names("tenant-a")).not.toContain("nu");
      const { grant } = await h.controlPlane.grantExtension({ name: "nu", tenantId: "tenant-a" });
      expect(grant).toMatchObject({ name: "nu", tenantId: "tenant-a" });
      expect(await names("tenant-a")).toContain("nu");
      expect(await names("tenant-b")).not.toContain("nu");
      expect((await h.controlPlane.listGrants({ tenantId: "tenant-a" })).grants.map((g) => g.name)).toEqual(["nu"]);
      expect((await h.controlPlane.revokeExtension({ name: "nu", tenantId: "tenant-a" })).revoked).toBe(true);
      expect(await names("tenant-a")).not.toContain("nu");
      await refusedWithoutChange(() => token("tenant-a", [sha256]), Code.PermissionDenied, /no grant/);
    });

    it("refuses a tenant id that Epufs and walredo would refuse too (the shared id rule)", async () => {
      await refusedWithoutChange(() => h.controlPlane.grantExtension({ name: "alpha", tenantId: "acme.prod" }), Code.InvalidArgument, /tenant_id "acme\.prod" is not valid/);
    });

    it("refuses a grant of an unknown extension (NOT_FOUND) and grants by a compute token", async () => {
      await refusedWithoutChange(() => h.controlPlane.grantExtension({ name: "nosuch", tenantId: "t" }), Code.NotFound);
      await refusedWithoutChange(() => h.compute.grantExtension({ name: "alpha", tenantId: "t" }), Code.PermissionDenied);
    });

    it("indexes the newest approved bundle per extension, with control files inline and a library map", async () => {
      await publishApproved("xi");
      const newer = await publishApproved("xi", publicHeader("xi"), [{ name: "lib/xi-2.so", content: "x" }]);
      await publish(publicHeader("xi"), bundle("xi")); // pending: never indexed
      const index = await h.controlPlane.getComputeIndex({ tenantId: "t1", pgMajor: 15 });
      const xi = index.extensions.find((e) => e.name === "xi")!;
      expect(xi.bundle!.sha256).toBe(newer.sha256);
      expect(xi.controlFiles.map((c) => c.name)).toEqual(["xi.control"]);
      expect(xi.controlFiles[0]!.content).toContain("module_pathname = '$libdir/xi'");
      expect(index.libraryIndex).toMatchObject({ xi: "xi", "xi-2": "xi" });
      const none = await h.controlPlane.getComputeIndex({ tenantId: "t1", pgMajor: 14 });
      expect(none.extensions.map((e) => e.name)).not.toContain("xi");
    });

    it("exports the index in Neon's remote_extensions shape", async () => {
      const pub = await publishApproved("omicron");
      const priv = await publishApproved("pi", publicHeader("pi", { visibility: Visibility.PRIVATE, needsSharedPreload: true }));
      await h.controlPlane.grantExtension({ name: "pi", tenantId: "tenant-x" });
      const { remoteExtensionsJson } = await h.controlPlane.exportRemoteExtensions({ tenantId: "tenant-x", pgMajor: 15 });
      const spec = JSON.parse(remoteExtensionsJson);
      expect(Object.keys(spec).sort()).toEqual(["custom_extensions", "extension_data", "library_index", "public_extensions"]);
      expect(spec.public_extensions).toContain("omicron");
      expect(spec.custom_extensions).toEqual(["pi"]);
      expect(spec.library_index).toMatchObject({ omicron: "omicron", pi: "pi" });
      expect(spec.extension_data.omicron).toEqual({
        control_data: { "omicron.control": expect.stringContaining("default_version = '1.0'") },
        archive_path: `extensions/omicron/sha256-${pub.sha256}/bundle.tar`,
        sha256: pub.sha256,
        needs_shared_preload: false,
        needs_session_preload: false,
      });
      expect(spec.extension_data.pi).toMatchObject({ sha256: priv.sha256, needs_shared_preload: true });
    });
  });

  describe("download tokens and download", () => {
    it("streams an approved bundle to a token naming it: info first, then chunks of at most 1 MiB", async () => {
      const big: RawEntry = { name: "lib/bitcode/rho/big.bc", content: randomBytes(3 * 1024 * 1024 + 17) };
      const { bytes, sha256 } = await publishApproved("rho", publicHeader("rho"), [big]);
      const download = await collectDownload(h.anonymous.downloadBundle({ sha256, downloadToken: await token("t1", [sha256]) }));
      expect(download.first?.msg.case).toBe("info");
      expect(download.infoCount).toBe(1);
      expect(download.info).toMatchObject({ name: "rho", sha256, reviewState: ReviewState.APPROVED });
      expect(sha256Of(download.bytes)).toBe(sha256);
      expect(download.bytes.equals(Buffer.from(bytes))).toBe(true);
      expect(download.chunkSizes.length).toBeGreaterThan(3);
      expect(Math.max(...download.chunkSizes)).toBeLessThanOrEqual(1024 * 1024);
    });

    it("refuses to issue a token for a pending or rejected bundle (FAILED_PRECONDITION)", async () => {
      const pending = await publish(publicHeader("sigma"), bundle("sigma"));
      await refusedWithoutChange(() => token("t1", [pending.extension!.sha256]), Code.FailedPrecondition, /pending/);
      const rejected = await publish(publicHeader("sigma"), bundle("sigma"));
      await h.admin.reviewExtension({ name: "sigma", sha256: rejected.extension!.sha256, decision: ReviewDecision.REJECT, reason: "no" });
      await refusedWithoutChange(() => token("t1", [rejected.extension!.sha256]), Code.FailedPrecondition, /rejected/);
    });

    it("refuses to download a pending or rejected bundle even with a token the store signed", async () => {
      const pending = await publish(publicHeader("tau"), bundle("tau"));
      const rejected = await publish(publicHeader("tau"), bundle("tau"));
      await h.admin.reviewExtension({ name: "tau", sha256: rejected.extension!.sha256, decision: ReviewDecision.REJECT });
      for (const sha256 of [pending.extension!.sha256, rejected.extension!.sha256]) {
        const { token: forged } = await signDownloadToken(h.downloadKey, { tenantId: "t1", endpointId: "ep1", bundles: [sha256] }, 60);
        await refusedWithoutChange(
          () => collectDownload(h.anonymous.downloadBundle({ sha256, downloadToken: forged })),
          Code.FailedPrecondition,
        );
      }
    });

    it("refuses an expired token (UNAUTHENTICATED)", async () => {
      const { sha256 } = await publishApproved("upsilon");
      const { token: expired } = await signDownloadToken(h.downloadKey, { tenantId: "t1", endpointId: "ep1", bundles: [sha256] }, -120);
      await refusedWithoutChange(
        () => collectDownload(h.anonymous.downloadBundle({ sha256, downloadToken: expired })),
        Code.Unauthenticated,
        /expired/,
      );
    });

    it("refuses a token signed by another key, and a mesh bearer token, as download tokens (UNAUTHENTICATED)", async () => {
      const { sha256 } = await publishApproved("phi");
      const { token: foreign } = await signDownloadToken(h.keys.signingKey, { tenantId: "t1", endpointId: "ep1", bundles: [sha256] }, 60);
      await refusedWithoutChange(() => collectDownload(h.anonymous.downloadBundle({ sha256, downloadToken: foreign })), Code.Unauthenticated);
      const bearer = await h.keys.mint({ scope: "admin" });
      await refusedWithoutChange(() => collectDownload(h.anonymous.downloadBundle({ sha256, downloadToken: bearer })), Code.Unauthenticated);
      await refusedWithoutChange(() => collectDownload(h.anonymous.downloadBundle({ sha256, downloadToken: "" })), Code.Unauthenticated);
      await refusedWithoutChange(() => collectDownload(h.anonymous.downloadBundle({ sha256, downloadToken: "x" })), Code.Unauthenticated);
    });

    it("refuses a token for another bundle (PERMISSION_DENIED)", async () => {
      const one = await publishApproved("chi");
      const other = await publishApproved("psi");
      const tokenForOne = await token("t1", [one.sha256]);
      await refusedWithoutChange(
        () => collectDownload(h.anonymous.downloadBundle({ sha256: other.sha256, downloadToken: tokenForOne })),
        Code.PermissionDenied,
        /does not name bundle/,
      );
    });

    it("refuses a private extension to a tenant without a grant, at issue and at download (PERMISSION_DENIED)", async () => {
      const { sha256 } = await publishApproved("omega", publicHeader("omega", { visibility: Visibility.PRIVATE }));
      await refusedWithoutChange(() => token("tenant-nogrant", [sha256]), Code.PermissionDenied, /no grant/);
      const { token: otherTenant } = await signDownloadToken(h.downloadKey, { tenantId: "tenant-nogrant", endpointId: "ep", bundles: [sha256] }, 60);
      await refusedWithoutChange(
        () => collectDownload(h.anonymous.downloadBundle({ sha256, downloadToken: otherTenant })),
        Code.PermissionDenied,
        /tenant "tenant-nogrant" has no grant/,
      );
      await h.controlPlane.grantExtension({ name: "omega", tenantId: "tenant-granted" });
      const granted = await collectDownload(h.anonymous.downloadBundle({ sha256, downloadToken: await token("tenant-granted", [sha256]) }));
      expect(sha256Of(granted.bytes)).toBe(sha256);
    });

    it("answers NOT_FOUND for a bundle that was never published, at issue and at download", async () => {
      const unknown = "ab".repeat(32);
      await refusedWithoutChange(() => token("t1", [unknown]), Code.NotFound);
      const { token: signed } = await signDownloadToken(h.downloadKey, { tenantId: "t1", endpointId: "ep1", bundles: [unknown] }, 60);
      await refusedWithoutChange(() => collectDownload(h.anonymous.downloadBundle({ sha256: unknown, downloadToken: signed })), Code.NotFound);
    });

    it("caps the token lifetime at the server maximum", async () => {
      const { sha256 } = await publishApproved("ttl");
      const before = Math.floor(Date.now() / 1000);
      const { expireTime } = await h.controlPlane.issueDownloadToken({ tenantId: "t1", endpointId: "ep1", sha256: [sha256], ttlSeconds: 10 ** 6 });
      const after = Math.ceil(Date.now() / 1000);
      expect(Number(expireTime!.seconds)).toBeGreaterThanOrEqual(before + 3600);
      expect(Number(expireTime!.seconds)).toBeLessThanOrEqual(after + 3600);
    });

    it("answers DATA_LOSS when a cataloged bundle's bytes are gone from the blob store", async () => {
      const { sha256 } = await publishApproved("lost");
      const downloadToken = await token("t1", [sha256]);
      expect(await h.blobs.delete(`extensions/lost/sha256-${sha256}/bundle.tar`)).toBe(true);
      const error = await failure(collectDownload(h.anonymous.downloadBundle({ sha256, downloadToken })));
      expect(Code[error.code]).toBe("DataLoss");
      expect(error.rawMessage).toMatch(/publish it again/);
    });

    it("refuses to issue tokens to a compute token (PERMISSION_DENIED)", async () => {
      const { sha256 } = await publishApproved("issue");
      await refusedWithoutChange(
        () => h.compute.issueDownloadToken({ tenantId: "t1", endpointId: "ep1", sha256: [sha256] }),
        Code.PermissionDenied,
      );
    });
  });
});
