import { chmod, mkdtemp, readFile } from "node:fs/promises";
import path from "node:path";
import pg from "pg";
import type { BlobStore } from "../../src/blob/index.js";
import { freePort } from "../../src/net/free-port.js";
import { chownTree, startPostgres, systemPgBinaries, type OsUser, type RunningPostgres } from "../../src/pg/index.js";
import {
  claimNextGeneration, planRestore, putWalChunk, restoreTimeline, shutdownCheckpointOf, writeGenerationStart, type TimelineRef,
} from "../../src/timeline/index.js";
import { walSegmentFileName } from "../../src/wal/index.js";

const binaries = systemPgBinaries(15);
const settings = { wal_level: "replica", fsync: "off", autovacuum: "off", shared_buffers: "16MB" };

/** A timeline started by hand, as a primary compute would: its generation, PGDATA and Postgres. */
export interface StartedTimeline {
  readonly postgres: RunningPostgres;
  readonly dataDir: string;
  readonly generation: number;
  readonly startLsn: bigint;
}

/**
 * Postgres on timelines of a store without compute-ctl, for tests of the
 * timeline library: restore a timeline into a fresh PGDATA and start it;
 * after a clean stop, ship its WAL as the shipper would.
 */
export class TimelinePostgres {
  #counter = 0;

  constructor(
    readonly root: string,
    readonly store: BlobStore,
    readonly user: OsUser,
    readonly segmentBytes = 16 * 1024 * 1024,
  ) {}

  async start(dataDir: string): Promise<RunningPostgres> {
    this.#counter += 1;
    return startPostgres({
      binaries, user: this.user, dataDir, port: await freePort(), settings,
      socketDir: path.join(this.root, `sock${this.#counter}`), logFile: path.join(this.root, `pg${this.#counter}.log`),
    });
  }

  /** Claims a generation, restores the timeline into a fresh PGDATA and starts Postgres there. */
  async startTimeline(ref: TimelineRef): Promise<StartedTimeline> {
    const { generation } = await claimNextGeneration(this.store, ref, `test-${this.#counter}`);
    const plan = (await planRestore(this.store, ref))!;
    const dataDir = await mkdtemp(path.join(this.root, `${ref.timelineId}-`));
    const { startLsn } = await restoreTimeline(this.store, plan, dataDir, { concurrency: 4 });
    await writeGenerationStart(this.store, ref, generation, startLsn);
    await chmod(dataDir, 0o700);
    await chownTree(dataDir, this.user);
    return { postgres: await this.start(dataDir), dataDir, generation, startLsn };
  }

  /** Ships the stopped cluster's WAL [from, its shutdown checkpoint's end) as chunks of `generation`. */
  async shipUntilShutdown(ref: TimelineRef, generation: number, dataDir: string, from: bigint): Promise<bigint> {
    const { endLsn } = await shutdownCheckpointOf(dataDir);
    const segment = BigInt(this.segmentBytes);
    for (let at = from; at < endLsn;) {
      const segno = at / segment;
      const bytes = await readFile(path.join(dataDir, "pg_wal", walSegmentFileName(1, segno, this.segmentBytes)));
      const to = (segno + 1n) * segment < endLsn ? (segno + 1n) * segment : endLsn;
      await putWalChunk(this.store, ref, { startLsn: at, generation, segmentBytes: this.segmentBytes, bytes: bytes.subarray(Number(at % segment), Number(to - segno * segment)) });
      at = to;
    }
    return endLsn;
  }
}

export async function queryRows<T = Record<string, unknown>>(postgres: RunningPostgres, sql: string, database = "postgres"): Promise<T[]> {
  const client = new pg.Client({ connectionString: postgres.connectionUri(database) });
  await client.connect();
  try {
    return (await client.query(sql)).rows as T[];
  } finally {
    await client.end();
  }
}
