import { readdir, rm, stat } from "node:fs/promises";
import path from "node:path";
import { dumpDatabase, readArchiveList, restoreDatabase, type ToolContext } from "./dump-restore.js";
import type { ImportReporter } from "./import-reporter.js";
import type { LocalCluster } from "./local-cluster.js";
import type { PhaseRunner } from "./phase-runner.js";
import type { SourceDatabase } from "./source-catalog.js";
import type { SourceConnection } from "./source-connection.js";
import type { WorkdirLayout } from "./workdir.js";

export interface DatabaseImport {
  readonly phases: PhaseRunner;
  readonly tools: ToolContext;
  readonly source: SourceConnection;
  readonly local: LocalCluster;
  readonly layout: WorkdirLayout;
  readonly reporter: ImportReporter;
}

/**
 * One database: dump from the source into the working directory, restore
 * into the local Postgres (event triggers left out), delete the archive,
 * then VACUUM (FREEZE, ANALYZE). Returns the archive's size and the number
 * of tables vacuumed.
 */
export async function importDatabase(job: DatabaseImport, db: SourceDatabase, index: number): Promise<{ dumpBytes: number; tables: number }> {
  const { phases, tools, source, local, layout, reporter } = job;
  const dir = path.join(layout.dumps, `db${index}`);
  let dumped = 0;
  await phases.run("dump", db.name, async (sample) => {
    // The archive is compressed, so the source size is no estimate of its bytes.
    sample(async () => ({ bytesDone: await treeBytes(dir), bytesTotal: undefined, itemsDone: dumped, itemsTotal: db.tables, itemUnit: "tables" }));
    await dumpDatabase(tools, source, db.name, dir, () => (dumped += 1));
  });
  const dumpBytes = await treeBytes(dir);
  const archive = await readArchiveList(tools, dir);
  if (archive.eventTriggers > 0) reporter.warn(`left out ${archive.eventTriggers} event trigger entries of ${JSON.stringify(db.name)}`);

  let restored = 0;
  await phases.run("restore", db.name, async (sample) => {
    const before = await treeBytes(layout.pgdata);
    sample(async () => ({
      bytesDone: Math.max(0, (await treeBytes(layout.pgdata)) - before), bytesTotal: db.sizeBytes,
      itemsDone: restored, itemsTotal: archive.tables, itemUnit: "tables",
    }));
    await restoreDatabase(tools, dir, `${dir}.list`, archive.list, local.uri(db.name), db.name, () => (restored += 1));
  });
  // The archive is no longer needed; free its space for the next database.
  await rm(dir, { recursive: true, force: true });

  let vacuumed = 0;
  const tables = await phases.run("vacuum", db.name, (sample) => {
    sample(() => ({ bytesDone: 0, bytesTotal: undefined, itemsDone: vacuumed, itemsTotal: archive.tables, itemUnit: "tables" }));
    return local.vacuum(db.name, () => (vacuumed += 1));
  });
  return { dumpBytes, tables };
}

/** Total size of the files under `dir` (0 when it does not exist yet). */
async function treeBytes(dir: string): Promise<number> {
  let total = 0;
  const entries = await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => []);
  for (const entry of entries) {
    if (!entry.isFile()) continue;
    total += await stat(path.join(entry.parentPath, entry.name)).then((s) => s.size, () => 0);
  }
  return total;
}
