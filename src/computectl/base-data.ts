import { setMaxListeners } from "node:events";
import { createWriteStream } from "node:fs";
import { chmod, mkdir, rm } from "node:fs/promises";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { Readable } from "node:stream";
import { Code, ConnectError } from "@connectrpc/connect";
import { execa } from "execa";
import { openBlobStore, type BlobStore, type BlobStoreOptions } from "../blob/index.js";
import { chownTree, removeOrphanedShmem, type OsUser, type PgBinaries } from "../pg/index.js";
import type { BaseDataSource } from "./compute-spec.js";
import { ensureInitdbTemplate } from "./initdb-template.js";

export interface BaseDataOptions {
  readonly pgdata: string;
  readonly binaries: PgBinaries;
  readonly user: OsUser;
  readonly templateRoot: string;
  /** Parallel object downloads for a snapshot. */
  readonly downloadConcurrency: number;
  readonly blobStoreOptions: BlobStoreOptions;
  readonly signal?: AbortSignal;
}

/** Directories Postgres needs that a snapshot (objects only) cannot carry. */
const standardEmptyDirs = [
  "pg_wal/archive_status", "pg_tblspc", "pg_stat", "pg_stat_tmp", "pg_notify", "pg_serial", "pg_snapshots",
  "pg_twophase", "pg_replslot", "pg_dynshmem", "pg_commit_ts", "pg_logical/snapshots", "pg_logical/mappings",
];

/**
 * Wipes PGDATA and lays it down afresh from its source, owned by the Postgres
 * user. A Postgres killed with its compute-ctl left its System V segment,
 * which Postgres itself would remove only on a start in this same PGDATA:
 * it goes first, while postmaster.pid still names it, once the dead
 * postmaster's children have let go of it.
 */
export async function layDownBaseData(source: Exclude<BaseDataSource, { source: "timeline" }>, options: BaseDataOptions): Promise<void> {
  await removeOrphanedShmem(options.pgdata, { waitMs: 5_000 });
  await rm(options.pgdata, { recursive: true, force: true });
  if (source.source === "initdb") {
    const template = await ensureInitdbTemplate(options);
    // cp -a keeps owner and modes, and is the quickest way to clone a small tree.
    await execa("cp", ["-a", "--reflink=auto", template, options.pgdata]);
    return;
  }
  await mkdir(options.pgdata, { recursive: true, mode: 0o700 });
  const store = await openBlobStore(source.storage, options.blobStoreOptions);
  try {
    await downloadSnapshot(store, source.prefix, options);
  } finally {
    await store.close();
  }
  for (const dir of standardEmptyDirs) await mkdir(path.join(options.pgdata, dir), { recursive: true, mode: 0o700 });
  await chmod(options.pgdata, 0o700);
  await chownTree(options.pgdata, options.user);
}

async function downloadSnapshot(store: BlobStore, prefix: string, options: BaseDataOptions): Promise<void> {
  const base = prefix ? `${prefix}/` : "";
  const where = `${base}pgdata/ of the snapshot store`;
  await checkSnapshotDone(store, `${base}status/pgdata`);
  const keys: string[] = [];
  for await (const info of store.listAll(`${base}pgdata/`)) keys.push(info.key);
  if (keys.length === 0) throw new ConnectError(`the snapshot has no objects under ${where}`, Code.FailedPrecondition);
  // Every parallel download listens on the signal (get and pipeline each add one):
  // a signal of our own, following the caller's, with room for them all.
  const signal = options.signal && AbortSignal.any([options.signal]);
  if (signal) setMaxListeners(2 * options.downloadConcurrency + 1, signal);
  let next = 0;
  const worker = async () => {
    while (next < keys.length) {
      const key = keys[next++]!;
      const relative = key.slice(`${base}pgdata/`.length);
      const target = path.resolve(options.pgdata, relative);
      if (!target.startsWith(`${options.pgdata}/`)) {
        throw new ConnectError(`snapshot object "${key}" escapes PGDATA`, Code.FailedPrecondition);
      }
      await mkdir(path.dirname(target), { recursive: true, mode: 0o700 });
      const object = await store.get(key, { signal });
      await pipeline(Readable.from(object.body), createWriteStream(target, { mode: 0o600 }), { signal });
    }
  };
  await Promise.all(Array.from({ length: Math.min(options.downloadConcurrency, keys.length) }, worker));
}

async function checkSnapshotDone(store: BlobStore, statusKey: string): Promise<void> {
  if (!(await store.head(statusKey))) {
    throw new ConnectError(`the snapshot is not complete: ${statusKey} is missing (fast-import writes it last)`, Code.FailedPrecondition);
  }
  const chunks: Buffer[] = [];
  for await (const chunk of (await store.get(statusKey)).body) chunks.push(Buffer.from(chunk));
  let status: { done?: unknown; error?: unknown };
  try {
    status = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch {
    throw new ConnectError(`the snapshot status ${statusKey} is not JSON`, Code.FailedPrecondition);
  }
  if (status.done !== true) {
    const why = typeof status.error === "string" ? `: ${status.error}` : " (still importing?)";
    throw new ConnectError(`the snapshot is not done according to ${statusKey}${why}`, Code.FailedPrecondition);
  }
}
