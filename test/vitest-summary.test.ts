import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { vitestSummary, type VitestJsonReport } from "./report/vitest-summary.js";

const root = path.resolve(import.meta.dirname, "..");
const fixtures = path.join(import.meta.dirname, "fixtures/vitest-report");
let work: string;

/** Runs the real vitest on the named fixture files, as test.sh runs it, and returns its closing lines. */
async function summaryOf(...files: string[]): Promise<string[]> {
  const report = path.join(work, `${files.join("+")}.json`);
  const run = await execa(
    process.execPath,
    [path.join(root, "node_modules/vitest/vitest.mjs"), "run", "--root", fixtures, "--reporter=json", `--outputFile.json=${report}`, ...files],
    { reject: false },
  );
  return vitestSummary(JSON.parse(await readFile(report, "utf8")) as VitestJsonReport, run.exitCode ?? 1, root);
}

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), "pgmesh-vitest-summary-"));
});
afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

describe("test.sh's closing line", () => {
  it("counts passed, failed and skipped tests", async () => {
    expect(await summaryOf("passes", "one-test-fails")).toEqual(["vitest: 1 passed, 1 failed, 1 skipped"]);
  });

  it("counts a test file that fails to load as failed, naming it and its error", async () => {
    expect(await summaryOf("passes", "fails-to-load")).toEqual([
      "failed outside its tests: test/fixtures/vitest-report/fails-to-load.check.ts",
      "  this file fails while it loads",
      "vitest: 1 passed, 1 failed, 1 skipped",
    ]);
  });

  it("counts a file whose beforeAll throws as failed, naming it and its error", async () => {
    expect(await summaryOf("passes", "file-hook-throws")).toEqual([
      "failed outside its tests: test/fixtures/vitest-report/file-hook-throws.check.ts",
      "  the file's beforeAll throws",
      "vitest: 1 passed, 1 failed, 2 skipped",
    ]);
  });

  it("counts a suite whose beforeAll throws as failed", async () => {
    expect(await summaryOf("passes", "suite-hook-throws")).toEqual([
      "failed outside its tests: test/fixtures/vitest-report/suite-hook-throws.check.ts",
      "  a suite's hook threw (see the output above)",
      "vitest: 1 passed, 1 failed, 2 skipped",
    ]);
  });

  it("says that vitest failed when an error outside any test made it exit non-zero", async () => {
    expect(await summaryOf("passes", "unhandled")).toEqual([
      'vitest exited with status 1 although every test passed: see "Unhandled Errors" above',
      "vitest: 2 passed, 0 failed, 1 skipped",
    ]);
  });

  it("says that there is no report when vitest wrote none", () => {
    expect(vitestSummary(undefined, 1, root)).toEqual(["vitest: no JSON report; vitest exited with status 1 (see its output above)"]);
  });
});
