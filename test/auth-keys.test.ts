import { generateKeyPairSync } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AuthError,
  createTokenVerifier,
  ensureDevKeys,
  generateKeyFiles,
  KeyFileError,
  loadSigningKey,
  loadSigningKeySet,
  loadVerifyKeySet,
  parseVerifyKeySet,
  requireEndpointAccess,
  requireScope,
  requireTenantAccess,
  signingKeyFrom,
  signToken,
  type Claims,
} from "../src/auth/index.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "pgmesh-auth-keys-"));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

function newKey() {
  return generateKeyPairSync("ed25519");
}

async function verifyError(promise: Promise<unknown>): Promise<AuthError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AuthError);
  return err as AuthError;
}

describe("verify key sets", () => {
  it("selects the key of a JWKS by the token's kid", async () => {
    const a = await generateKeyFiles(join(dir, "a"));
    const b = await generateKeyFiles(join(dir, "b"));
    const jwks = {
      keys: [...JSON.parse(await readFile(a.jwksPath, "utf8")).keys, ...JSON.parse(await readFile(b.jwksPath, "utf8")).keys],
    };
    const verifier = createTokenVerifier(await parseVerifyKeySet(JSON.stringify(jwks), "both.jwks"));
    const token = await signToken(await loadSigningKey(b.privateKeyPath), { scope: "admin", subject: "ops" }, { ttlSec: 60 });
    expect(await verifier.verify(token)).toMatchObject({ scope: "admin", subject: "ops" });
  });

  it("reads several concatenated PEM public keys and verifies a token without kid by trying each", async () => {
    const first = newKey();
    const second = newKey();
    const pem = [first, second].map((k) => k.publicKey.export({ format: "pem", type: "spki" })).join("");
    const path = join(dir, "two.pem");
    await writeFile(path, pem);
    const verifier = createTokenVerifier(await loadVerifyKeySet(path));
    const token = await signToken(await signingKeyFrom(second.privateKey), { scope: "compute", tenantId: "t" }, { ttlSec: 60, omitKid: true });
    expect(await verifier.verify(token)).toMatchObject({ scope: "compute", tenantId: "t" });
  });

  it("matches a PEM key to tokens by its RFC 7638 thumbprint", async () => {
    const key = newKey();
    const keySet = await parseVerifyKeySet(key.publicKey.export({ format: "pem", type: "spki" }) as string, "one.pem");
    const signing = await signingKeyFrom(key.privateKey);
    expect(keySet.keys.map((k) => k.kid)).toEqual([signing.kid]);
    const claims = await createTokenVerifier(keySet).verify(await signToken(signing, { scope: "control_plane" }, { ttlSec: 60 }));
    expect(claims.scope).toBe("control_plane");
  });

  it("accepts a token naming a PEM key by another kid when that key verifies it", async () => {
    const key = newKey();
    const verifier = createTokenVerifier(await parseVerifyKeySet(key.publicKey.export({ format: "pem", type: "spki" }) as string, "k.pem"));
    const issuerKid = { ...(await signingKeyFrom(key.privateKey)), kid: "issuer-2026-01" };
    expect((await verifier.verify(await signToken(issuerKid, { scope: "admin" }, { ttlSec: 60 }))).scope).toBe("admin");
    const stranger = { ...(await signingKeyFrom(newKey().privateKey)), kid: "issuer-2026-01" };
    const err = await verifyError(verifier.verify(await signToken(stranger, { scope: "admin" }, { ttlSec: 60 })));
    expect(err.failure).toBe("unknown_key");
  });

  it("refuses a key file that is missing", async () => {
    await expect(loadVerifyKeySet(join(dir, "nope.jwks"))).rejects.toThrow(/auth keys ".*nope.jwks": cannot read/);
  });

  it("refuses a key file without keys", async () => {
    await expect(parseVerifyKeySet("hello", "x.pem")).rejects.toThrow(KeyFileError);
    await expect(parseVerifyKeySet("hello", "x.pem")).rejects.toThrow('auth keys "x.pem": holds no public keys');
  });

  it("refuses JSON that is not a JWKS", async () => {
    await expect(parseVerifyKeySet('{"kty":"OKP"}', "k.json")).rejects.toThrow('is JSON but not a JWKS: expected {"keys": [...]}');
  });

  it("refuses a non-Ed25519 key", async () => {
    const rsa = generateKeyPairSync("rsa", { modulusLength: 1024 }).publicKey.export({ format: "pem", type: "spki" }) as string;
    await expect(parseVerifyKeySet(rsa, "rsa.pem")).rejects.toThrow("pgmesh verifies Ed25519 (OKP) keys only");
  });

  it("refuses a private key in a JWKS", async () => {
    const jwk = { ...newKey().privateKey.export({ format: "jwk" }), kid: "k1" };
    await expect(parseVerifyKeySet(JSON.stringify({ keys: [jwk] }), "priv.jwks")).rejects.toThrow(
      "key k1 is a private key; give the public key only",
    );
  });
});

describe("signing key sets", () => {
  it("signs with the last private key of a JWKS and verifies with every key, by the kids it names", async () => {
    const [older, newest, retired] = [newKey(), newKey(), newKey()].map(({ privateKey }) => privateKey.export({ format: "jwk" }));
    const { d: _retiredPrivate, ...retiredPublic } = retired!;
    const path = join(dir, "set.jwks.json");
    const keys = [
      { ...retiredPublic, kid: "k0" },
      { ...older, kid: "k1" },
      { ...newest, kid: "k2" },
    ];
    await writeFile(path, JSON.stringify({ keys }));
    const set = await loadSigningKeySet(path);
    expect(set.signingKey.kid).toBe("k2");
    expect(set.verifyKeys.map((key) => key.kid)).toEqual(["k0", "k1", "k2"]);
    const token = await signToken(set.signingKey, { scope: "admin" }, { ttlSec: 60 });
    expect(await createTokenVerifier({ keys: set.verifyKeys }).verify(token)).toMatchObject({ scope: "admin" });
  });

  it("refuses a key set without a private key to sign with", async () => {
    const path = join(dir, "public-only.pem");
    await writeFile(path, newKey().publicKey.export({ format: "pem", type: "spki" }));
    await expect(loadSigningKeySet(path)).rejects.toThrow(KeyFileError);
    await expect(loadSigningKeySet(path)).rejects.toThrow("holds no private key to sign with");
  });
});

describe("token verifier", () => {
  it("maps the wire claims to Claims", async () => {
    const key = newKey();
    const signing = await signingKeyFrom(key.privateKey);
    const keySet = await parseVerifyKeySet(key.publicKey.export({ format: "pem", type: "spki" }) as string, "k");
    const now = Date.UTC(2030, 0, 1);
    const token = await signToken(
      signing,
      { scope: "compute", tenantId: "t", timelineId: "tl", endpointId: "e" },
      { ttlSec: 3600, now: () => now },
    );
    const claims = await createTokenVerifier(keySet, { now: () => now }).verify(token);
    expect(claims).toEqual({
      scope: "compute",
      tenantId: "t",
      timelineId: "tl",
      endpointId: "e",
      subject: undefined,
      expiresAt: new Date(now + 3600_000),
    });
    // The same token an hour and 31 s later is expired (30 s of skew allowed).
    const later = createTokenVerifier(keySet, { now: () => now + 3631_000 });
    expect((await verifyError(later.verify(token))).failure).toBe("expired");
  });

  it("honours a token issued up to 30 s in the future (clock skew)", async () => {
    const key = newKey();
    const signing = await signingKeyFrom(key.privateKey);
    const verifier = createTokenVerifier(await parseVerifyKeySet(key.publicKey.export({ format: "pem", type: "spki" }) as string, "k"));
    const early = await signToken(signing, { scope: "admin" }, { ttlSec: 60, now: () => Date.now() + 20_000 });
    expect((await verifier.verify(early)).scope).toBe("admin");
  });

  it("refuses a token issued more than 30 s in the future, naming the signer's clock", async () => {
    const key = newKey();
    const signing = await signingKeyFrom(key.privateKey);
    const verifier = createTokenVerifier(await parseVerifyKeySet(key.publicKey.export({ format: "pem", type: "spki" }) as string, "k"));
    const ahead = await signToken(signing, { scope: "admin" }, { ttlSec: 3600, now: () => Date.now() + 120_000 });
    const error = await verifyError(verifier.verify(ahead));
    expect(error.failure).toBe("bad_claims");
    expect(error.message).toMatch(/in the future; check the signer's clock/);
  });

  it("refuses a claim of the wrong type", async () => {
    const key = newKey();
    const { SignJWT } = await import("jose");
    const token = await new SignJWT({ scope: "compute", tenant_id: 42 })
      .setProtectedHeader({ alg: "EdDSA" })
      .setExpirationTime("1m")
      .sign(key.privateKey);
    const verifier = createTokenVerifier(await parseVerifyKeySet(key.publicKey.export({ format: "pem", type: "spki" }) as string, "k"));
    const err = await verifyError(verifier.verify(token));
    expect(err.failure).toBe("bad_claims");
    expect(err.message).toBe('token claim "tenant_id" must be a string, got 42');
  });
});

describe("dev keys", () => {
  it("creates a key pair once and keeps it afterwards", async () => {
    const keyDir = join(dir, "dev");
    const first = await ensureDevKeys(keyDir);
    const again = await ensureDevKeys(keyDir);
    expect(again).toEqual(first);
    expect((await readFile(first.privateKeyPath, "utf8")).startsWith("-----BEGIN PRIVATE KEY-----")).toBe(true);
    const jwks = JSON.parse(await readFile(first.jwksPath, "utf8"));
    expect(jwks.keys[0]).toMatchObject({ kty: "OKP", crv: "Ed25519", kid: first.kid, alg: "EdDSA" });
    expect(jwks.keys[0].d).toBeUndefined();
  });

  it("refuses to load a public key as a signing key", async () => {
    const files = await generateKeyFiles(join(dir, "pub"));
    await expect(loadSigningKey(files.publicKeyPath)).rejects.toThrow(KeyFileError);
  });
});

describe("authorization helpers", () => {
  const compute: Claims = { scope: "compute", tenantId: "t1", timelineId: "tl1", endpointId: "e1", expiresAt: new Date() };
  const controlPlane: Claims = { scope: "control_plane", expiresAt: new Date() };
  const admin: Claims = { scope: "admin", expiresAt: new Date() };
  const denied = (fn: () => void): ConnectError => {
    try {
      fn();
    } catch (err) {
      return ConnectError.from(err);
    }
    throw new Error("the check passed but should have failed");
  };

  it("lets an admin token do what control_plane may", () => {
    expect(() => requireScope(admin, "control_plane")).not.toThrow();
  });

  it("refuses a control_plane token where admin is needed", () => {
    const err = denied(() => requireScope(controlPlane, "admin"));
    expect(err.code).toBe(Code.PermissionDenied);
    expect(err.rawMessage).toBe("a control_plane token may not do this; it needs scope admin");
  });

  it("refuses a compute token where control_plane is needed", () => {
    expect(denied(() => requireScope(compute, "control_plane", "admin")).code).toBe(Code.PermissionDenied);
  });

  it("does not let admin stand in for a compute-only action", () => {
    expect(denied(() => requireScope(admin, "compute")).code).toBe(Code.PermissionDenied);
  });

  it("names the mismatching field for a compute token", () => {
    const ref = { tenantId: "t1", timelineId: "tl2", endpointId: "e1" };
    expect(denied(() => requireEndpointAccess(compute, ref)).rawMessage).toBe(
      'the compute token is for timeline_id "tl1", not timeline_id "tl2"',
    );
    expect(denied(() => requireTenantAccess(compute, "t9")).rawMessage).toBe('the compute token is for tenant_id "t1", not tenant_id "t9"');
  });

  it("refuses a compute token without the claim the resource needs", () => {
    const tenantOnly: Claims = { scope: "compute", tenantId: "t1", expiresAt: new Date() };
    const err = denied(() => requireEndpointAccess(tenantOnly, { tenantId: "t1", timelineId: "tl1", endpointId: "e1" }));
    expect(err.rawMessage).toBe('the compute token has no timeline_id claim, so it covers no timeline_id "tl1"');
  });

  it("lets control_plane and admin tokens reach any tenant", () => {
    for (const claims of [controlPlane, admin]) {
      expect(() => requireEndpointAccess(claims, { tenantId: "x", timelineId: "y", endpointId: "z" })).not.toThrow();
    }
  });

  it("passes every check when the server runs without auth (no claims)", () => {
    expect(() => requireScope(undefined, "admin")).not.toThrow();
    expect(() => requireTenantAccess(undefined, "t")).not.toThrow();
  });
});
