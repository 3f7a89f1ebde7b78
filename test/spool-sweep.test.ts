import { spawn } from "node:child_process";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { removeOrphanedSpoolFiles, spoolFilePath } from "../src/blob/index.js";

const blobIndex = resolve(import.meta.dirname, "../dist/src/blob/index.js");

/** Another process (a replica sharing the directory) that writes a spool file in `dir` and keeps running. */
async function spoolingProcess(dir: string) {
  const script = `
    const { spoolFilePath } = await import(${JSON.stringify(blobIndex)});
    const { writeFile } = await import("node:fs/promises");
    const path = spoolFilePath(${JSON.stringify(dir)}, "put");
    await writeFile(path, "partial");
    console.log(path);
    process.stdin.resume();`;
  const child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["pipe", "pipe", "inherit"] });
  const exited = new Promise((done) => child.once("exit", done));
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const path = (await lines.next()).value as string;
  return {
    path,
    async kill(): Promise<void> {
      child.kill("SIGKILL");
      await exited;
    },
  };
}

describe("spool sweep", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "pgmesh-spool-sweep-"));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it("keeps the spool files of live processes, this one's and another's", async () => {
    const other = await spoolingProcess(dir);
    try {
      const own = spoolFilePath(dir, "put");
      await writeFile(own, "partial");
      await removeOrphanedSpoolFiles(dir);
      expect((await readdir(dir)).sort()).toEqual([own, other.path].map((p) => p.slice(dir.length + 1)).sort());
    } finally {
      await other.kill();
    }
  });

  it("removes the spool file of a process killed with SIGKILL", async () => {
    const other = await spoolingProcess(dir);
    await other.kill();
    await removeOrphanedSpoolFiles(dir);
    expect(await readdir(dir)).toEqual([]);
  });

  it("leaves files it did not name alone (the spool dir may be the OS temp dir)", async () => {
    await writeFile(join(dir, "someone-elses.part"), "x");
    await removeOrphanedSpoolFiles(dir);
    expect(await readdir(dir)).toEqual(["someone-elses.part"]);
  });
});
