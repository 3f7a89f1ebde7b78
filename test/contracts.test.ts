import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { execa } from "execa";
import { afterAll, describe, expect, it } from "vitest";

const root = path.resolve(import.meta.dirname, "..");

async function filesUnder(dir: string): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const full = path.join(entry.parentPath, entry.name);
    files.set(path.relative(dir, full), await readFile(full, "utf8"));
  }
  return files;
}

describe("contracts", () => {
  const scratch = mkdtemp(path.join(os.tmpdir(), "pgmesh-gen-"));
  afterAll(async () => rm(await scratch, { recursive: true, force: true }));

  it("pass buf lint", async () => {
    // buf itself, not through npx: npm may add notices of its own (a newer npm, config warnings) to the output.
    const result = await execa(path.join(root, "node_modules", ".bin", "buf"), ["lint"], { cwd: root, reject: false, all: true });
    expect(result.all).toBe("");
    expect(result.exitCode).toBe(0);
  });

  it("match the generated code committed in gen/", async () => {
    const out = await scratch;
    await execa("npx", ["buf", "generate", "--output", out], { cwd: root });
    const fresh = await filesUnder(path.join(out, "gen"));
    const committed = await filesUnder(path.join(root, "gen"));
    expect([...committed.keys()].sort()).toEqual([...fresh.keys()].sort());
    for (const [file, content] of fresh) {
      expect(committed.get(file), `gen/${file} is stale: run npm run gen`).toBe(content);
    }
  });
});
