import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTokenVerifier, loadVerifyKeySet, runTokenCommand } from "../src/auth/index.js";
import { runCommand } from "./helpers/run-command.js";

/** Runs pgmesh-token in-process. */
function pgmeshToken(...argv: string[]) {
  return runCommand(runTokenCommand, argv);
}

describe("pgmesh-token", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "pgmesh-token-"));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it("writes a key pair with keygen and mints a token the public keys verify", async () => {
    const keygen = await pgmeshToken("keygen", "--out", dir);
    expect(keygen.code).toBe(0);
    expect(keygen.stdout).toContain(join(dir, "public-keys.jwks.json"));

    const mint = await pgmeshToken(
      "mint", "--key", join(dir, "signing-key.pem"), "--scope", "compute",
      "--tenant", "t", "--timeline", "tl", "--endpoint", "e", "--ttl", "15m",
    );
    expect(mint.code).toBe(0);
    for (const keys of ["public-keys.jwks.json", "public-key.pem"]) {
      const claims = await createTokenVerifier(await loadVerifyKeySet(join(dir, keys))).verify(mint.stdout.trim());
      expect(claims).toMatchObject({ scope: "compute", tenantId: "t", timelineId: "tl", endpointId: "e" });
      expect(claims.expiresAt.getTime() - Date.now()).toBeGreaterThan(14 * 60_000);
      expect(claims.expiresAt.getTime() - Date.now()).toBeLessThanOrEqual(15 * 60_000);
    }
  });

  it("refuses to overwrite keys without --force", async () => {
    const again = await pgmeshToken("keygen", "--out", dir);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain("already holds a key; give --force to replace it");
  });

  it("refuses a scope that does not exist", async () => {
    const res = await pgmeshToken("mint", "--key", join(dir, "signing-key.pem"), "--scope", "root");
    expect(res.code).toBe(2);
    expect(res.stderr).toContain("mint needs --scope, one of compute, control_plane, admin");
  });

  it("refuses a missing or unknown command", async () => {
    expect((await pgmeshToken()).stderr).toContain("expected a command, keygen or mint, got none");
    expect((await pgmeshToken("sign")).code).toBe(2);
  });
});
