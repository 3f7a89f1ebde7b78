#!/usr/bin/env node
/**
 * WalRedo benchmark: a short batch (2 heap records, no base image) and a
 * medium batch (200 heap INSERT records on a base image), with 1, 8 and 64
 * requests in flight, through the gRPC service (one Redo stream, one process
 * for the tenant) against the same requests written straight to one walredo
 * process's pipes, in the same run. The service is the walredo binary in its
 * own process (as deployed), this process is its client. Prints redo/s, mean
 * and p99 latency, the ratio service/direct, and Neon's published per-redo
 * figures beside them.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/walredo.js [--bundle DIR]
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { chmod, mkdtemp, open, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { create } from "@bufbuild/protobuf";
import { createClient, type Client } from "@connectrpc/connect";
import pg from "pg";
import { RedoRequestSchema, WalRedoService, type RedoRequest as RedoRequestMessage } from "../gen/pgmesh/walredo/v1/walredo_pb.js";
import { buildBundle } from "../src/bundle/index.js";
import { freePort } from "../src/net/free-port.js";
import { initdb, resolveUnprivilegedUser, startPostgres, systemPgBinaries } from "../src/pg/index.js";
import { createClientTransport } from "../src/server/index.js";
import { parseLsn, readWalRecords } from "../src/wal/index.js";
import { RedoProcess, type RedoRequest } from "../src/walredo/index.js";

const NEON_US = { short: 32, medium: 139 };
const IN_FLIGHT = [1, 8, 64];
const COUNTS = { short: 3000, medium: 600 };

interface Batch {
  readonly name: "short" | "medium";
  readonly request: RedoRequest;
}

/** A throwaway Postgres (full_page_writes off, so records carry no images) producing both batches. */
async function makeBatches(root: string): Promise<Batch[]> {
  const user = await resolveUnprivilegedUser();
  const binaries = systemPgBinaries(15);
  const dataDir = path.join(root, "data");
  await initdb({ binaries, dataDir, user, extraArgs: ["--no-sync"] });
  const postgres = await startPostgres({
    binaries, user, dataDir, port: await freePort(), socketDir: path.join(root, "sock"), logFile: path.join(root, "pg.log"),
    settings: { full_page_writes: "off", autovacuum: "off", fsync: "off", wal_keep_size: "1GB" },
  });
  const client = new pg.Client({ connectionString: postgres.connectionUri() });
  await client.connect();
  const lsn = async () => parseLsn((await client.query("select pg_current_wal_insert_lsn()::text as l")).rows[0].l);
  const filenode = async (rel: string) => Number((await client.query("select pg_relation_filenode($1::regclass) as f", [rel])).rows[0].f);
  await client.query("create table short_t (id int); create table medium_t (id int); insert into medium_t values (0)");
  await client.query("checkpoint");
  const start = await lsn();
  const { rows: [db] } = await client.query("select oid from pg_database where datname = current_database()");
  const dbOid = Number(db.oid);
  const mediumNode = await filenode("medium_t");
  const shortNode = await filenode("short_t");
  const base = Buffer.alloc(8192);
  const file = await open(path.join(dataDir, "base", String(dbOid), String(mediumNode)), "r");
  await file.read(base, 0, 8192, 0);
  await file.close();
  await client.query("insert into short_t values (1)");
  await client.query("insert into short_t values (2)");
  await client.query("insert into medium_t select g from generate_series(1, 200) g");
  await client.end();
  await postgres.stop("fast");
  const recordsOf = new Map<number, { endLsn: bigint; record: Uint8Array }[]>([[shortNode, []], [mediumNode, []]]);
  for await (const r of readWalRecords({ walDir: path.join(dataDir, "pg_wal"), startLsn: start })) {
    const b = r.blocks.find((x) => recordsOf.has(x.rel.relNumber) && x.fork === 0 && x.blockNumber === 0);
    if (b) recordsOf.get(b.rel.relNumber)!.push({ endLsn: r.endLsn, record: r.bytes });
  }
  const tag = (relNode: number) => ({ forkNumber: 0, spcNode: 1663, dbNode: dbOid, relNode, blockNumber: 0 });
  const short = recordsOf.get(shortNode)!;
  const medium = recordsOf.get(mediumNode)!;
  if (short.length !== 2 || medium.length !== 200) throw new Error(`expected 2 and 200 records, got ${short.length} and ${medium.length}`);
  return [
    { name: "short", request: { tag: tag(shortNode), records: short } },
    { name: "medium", request: { tag: tag(mediumNode), baseImage: base, records: medium } },
  ];
}

interface Result {
  readonly redoPerSec: number;
  readonly meanUs: number;
  readonly p99Us: number;
}

const now = (): bigint => process.hrtime.bigint();

function summarize(latenciesNs: bigint[], totalNs: bigint): Result {
  const us = latenciesNs.map((l) => Number(l) / 1000).sort((a, b) => a - b);
  return {
    redoPerSec: (us.length * 1e9) / Number(totalNs),
    meanUs: us.reduce((a, b) => a + b, 0) / us.length,
    p99Us: us[Math.min(us.length - 1, Math.floor(us.length * 0.99))]!,
  };
}

/** `inFlight` loops, each sending its next request when its last one is answered. */
async function runDirect(process_: RedoProcess, request: RedoRequest, count: number, inFlight: number): Promise<Result> {
  const latencies: bigint[] = [];
  let sent = 0;
  const started = now();
  await Promise.all(Array.from({ length: inFlight }, async () => {
    while (sent < count) {
      sent++;
      const t = now();
      await process_.applyRecords(request);
      latencies.push(now() - t);
    }
  }));
  return summarize(latencies, now() - started);
}

/** One Redo stream with at most `inFlight` requests unanswered. */
async function runService(client: Client<typeof WalRedoService>, template: RedoRequestMessage, count: number, inFlight: number): Promise<Result> {
  const sentAt: bigint[] = new Array(count);
  const latencies: bigint[] = [];
  let credits = inFlight;
  let wake: (() => void) | undefined;
  const requests = (async function* () {
    for (let i = 0; i < count; i++) {
      while (credits === 0) await new Promise<void>((r) => (wake = r));
      credits--;
      sentAt[i] = now();
      yield { ...template, requestId: BigInt(i) };
    }
  })();
  const started = now();
  for await (const response of client.redo(requests)) {
    if (response.result.case !== "page") throw new Error(`redo failed: ${response.result.value?.message}`);
    latencies.push(now() - sentAt[Number(response.requestId)]!);
    credits++;
    wake?.();
    wake = undefined;
  }
  return summarize(latencies, now() - started);
}

/** Starts `walredo` (dist/cmd/walredo.js) with one process per tenant; resolves with its URL and a stop function. */
async function startWalredoBinary(bundleDir: string): Promise<{ url: string; stop: () => Promise<void> }> {
  const binary = fileURLToPath(new URL("../cmd/walredo.js", import.meta.url));
  const child = spawn(process.execPath, [binary, "--listen", "127.0.0.1:0", "--insecure-no-auth", "--bundle", bundleDir, "--max-processes-per-tenant", "1", "--log-level", "info"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const exited = once(child, "exit");
  const url = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on("line", (line) => {
      const entry = JSON.parse(line) as { msg?: string; url?: string };
      if (entry.msg === "walredo serving" && entry.url) resolve(entry.url);
    });
    void exited.then(() => reject(new Error("walredo exited before serving")));
  });
  return {
    url,
    stop: async () => {
      child.kill("SIGTERM");
      await exited;
    },
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { bundle: { type: "string", default: ".pgmesh/bundle" } } });
  const bundleDir = path.resolve(values.bundle!);
  await buildBundle({ outDir: bundleDir });
  const root = await mkdtemp(path.join(os.tmpdir(), "pgmesh-bench-walredo-"));
  await chmod(root, 0o755);
  const user = await resolveUnprivilegedUser();
  const chroot = (process.getuid?.() ?? 0) === 0;
  try {
    const batches = await makeBatches(root);
    const direct = await RedoProcess.start({ bundleDir, chroot, user: { uid: user.uid, gid: user.gid } });
    const service = await startWalredoBinary(bundleDir);
    const client = createClient(WalRedoService, createClientTransport({ baseUrl: service.url }));
    console.log(`walredo benchmark: one walredo process each way (chroot ${chroot}); service = the walredo binary, one Redo stream over h2c loopback`);
    console.log("batch   in-flight | direct redo/s  mean µs   p99 µs | service redo/s  mean µs   p99 µs | service/direct time | Neon µs/redo (1 client)");
    for (const batch of batches) {
      const template = create(RedoRequestSchema, {
        tenantId: "bench", pgMajor: 15,
        tag: { spcOid: batch.request.tag.spcNode, dbOid: batch.request.tag.dbNode, relNumber: batch.request.tag.relNode, fork: 0, blockNumber: 0 },
        ...(batch.request.baseImage ? { baseImage: batch.request.baseImage } : {}),
        records: [...batch.request.records],
      });
      const viaDirect = Buffer.from(await direct.applyRecords(batch.request));
      const { $typeName: _type, requestId: _id, ...unary } = template;
      const viaService = Buffer.from((await client.redoPage(unary)).page);
      if (!viaDirect.equals(viaService)) throw new Error(`${batch.name}: the service and the process disagree on the page`);
      const count = COUNTS[batch.name];
      await runDirect(direct, batch.request, 200, 8);
      await runService(client, template, 200, 8);
      for (const inFlight of IN_FLIGHT) {
        const d = await runDirect(direct, batch.request, count, inFlight);
        const s = await runService(client, template, count, inFlight);
        const f = (n: number, w: number) => n.toFixed(0).padStart(w);
        console.log(
          `${batch.name.padEnd(7)} ${String(inFlight).padStart(9)} | ${f(d.redoPerSec, 13)} ${f(d.meanUs, 8)} ${f(d.p99Us, 8)} | ${f(s.redoPerSec, 14)} ${f(s.meanUs, 8)} ${f(s.p99Us, 8)} | ${(d.redoPerSec / s.redoPerSec).toFixed(2).padStart(19)} | ${inFlight === 1 ? NEON_US[batch.name] : ""}`,
        );
      }
    }
    await service.stop();
    direct.kill();
    await direct.exited;
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

await main();
