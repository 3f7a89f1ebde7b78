import { createReadStream } from "node:fs";
import { readdir } from "node:fs/promises";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openBlobStore, type BlobStore } from "../src/blob/index.js";
import type { Compute } from "../src/computectl/index.js";
import { freePort } from "../src/net/free-port.js";
import { initdb, resolveUnprivilegedUser, startPostgres, systemPgBinaries } from "../src/pg/index.js";
import { newCompute, spec, traversableTempDir } from "./computectl-fixtures.js";
import { startS3rver, type S3rverHandle } from "./helpers/s3rver.js";

async function* jsonBody(value: unknown): AsyncGenerator<Uint8Array> {
  yield Buffer.from(JSON.stringify(value));
}

/** Every file under dir, relative. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => path.relative(dir, path.join(e.parentPath, e.name)));
}

describe("Compute start-up from a PGDATA snapshot", () => {
  let tmp: { dir: string; remove(): Promise<void> };
  let storeUrl: string;
  let store: BlobStore;
  let s3: S3rverHandle;
  let s3Store: BlobStore;
  const computes: Compute[] = [];

  beforeAll(async () => {
    tmp = await traversableTempDir("pgmesh-snapshot-");
    storeUrl = `file://${path.join(tmp.dir, "store")}`;
    store = await openBlobStore(storeUrl);
    // What fast-import leaves: a cleanly shut down PGDATA under P/pgdata/, then P/status/pgdata written last.
    const binaries = systemPgBinaries(15);
    const user = await resolveUnprivilegedUser();
    const source = path.join(tmp.dir, "source");
    await initdb({ binaries, user, dataDir: source, extraArgs: ["--no-sync"] });
    const postgres = await startPostgres({
      binaries, user, dataDir: source, port: await freePort(), socketDir: path.join(tmp.dir, "sock"), logFile: path.join(tmp.dir, "source.log"),
    });
    const client = new pg.Client({ connectionString: postgres.connectionUri() });
    await client.connect();
    await client.query("CREATE DATABASE imported");
    await client.end();
    const imported = new pg.Client({ connectionString: postgres.connectionUri("imported") });
    await imported.connect();
    await imported.query("CREATE TABLE items AS SELECT g AS id, 'item ' || g AS name FROM generate_series(1, 1000) g");
    await imported.end();
    await postgres.stop("fast");
    const files = (await filesUnder(source)).filter((f) => f !== "postmaster.pid" && f !== "postmaster.opts");
    const upload = async (to: BlobStore) => {
      for (let i = 0; i < files.length; i += 32) {
        await Promise.all(files.slice(i, i + 32).map((file) => to.put(`imports/one/pgdata/${file}`, createReadStream(path.join(source, file)))));
      }
      await to.put("imports/one/status/pgdata", jsonBody({ done: true }));
    };
    s3 = await startS3rver();
    s3Store = await openBlobStore(s3.url("snapshots"), s3.blobStoreOptions);
    await Promise.all([upload(store), upload(s3Store)]);
    await store.put("imports/failed/status/pgdata", jsonBody({ done: false, error: "pg_restore failed" }));
  });

  afterAll(async () => {
    for (const c of computes) await c.shutdown();
    await store?.close();
    await s3Store?.close();
    await s3?.stop();
    await tmp?.remove();
  });

  const start = (name: string, prefix: string, storage = storeUrl) => {
    const compute = newCompute(path.join(tmp.dir, name), { templateRoot: path.join(tmp.dir, "templates"), blobStoreOptions: s3.blobStoreOptions });
    computes.push(compute);
    compute.begin("127.0.0.1:1");
    return compute.configure(spec({ pgmesh: { base_data: { source: "snapshot", storage, prefix } } })).then(() => compute);
  };

  it.each([["a local directory", "file"], ["S3 (s3rver)", "s3"]])("downloads the snapshot from %s into a fresh PGDATA and serves its data", async (_, backend) => {
    const compute = await start(`from-${backend}`, "imports/one", backend === "s3" ? s3.url("snapshots") : storeUrl);
    const status = await compute.waitUntilRunning();
    expect(status.timings.baseDataMs).toBeGreaterThan(0);
    const client = new pg.Client({ connectionString: status.connectionUri.replace("/postgres", "/imported") });
    await client.connect();
    const { rows } = await client.query("SELECT count(*)::int AS n, max(name) AS last FROM items");
    await client.end();
    expect(rows[0]).toEqual({ n: 1000, last: "item 999" });
  });

  it("refuses a snapshot whose status/pgdata is missing", async () => {
    const compute = await start("missing-status", "imports/nothing");
    await expect(compute.waitUntilRunning()).rejects.toThrow(
      "could not lay down PGDATA (snapshot): the snapshot is not complete: imports/nothing/status/pgdata is missing (fast-import writes it last)",
    );
  });

  it("refuses a snapshot whose import failed, with the import's error", async () => {
    const compute = await start("failed-import", "imports/failed");
    await expect(compute.waitUntilRunning()).rejects.toThrow(
      "the snapshot is not done according to imports/failed/status/pgdata: pg_restore failed",
    );
  });
});
