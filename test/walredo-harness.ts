/**
 * Test harness for the WalRedo service: the Postgres bundle (built once,
 * reused), a real server on a free port, and a client.
 */
import { chmod, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { createClient, type Client } from "@connectrpc/connect";
import { pino, type Logger } from "pino";
import { create } from "@bufbuild/protobuf";
import { RedoRequestSchema, WalRedoService, type RedoRequest } from "../gen/pgmesh/walredo/v1/walredo_pb.js";
import { createClientTransport, serviceOf, type ServerHandle } from "../src/server/index.js";
import { compileWalRedoOptions, createWalRedoService, processPoolMetrics, RedoProcessPool, type WalRedoOptions } from "../src/walredo/index.js";
import { ensureTestBundle } from "./bundle-fixture.js";
import { startTestServer } from "./helpers/test-server.js";
import type { PageCase, WalWorkload } from "./walredo-workload.js";

export interface WalRedoHarness {
  readonly server: ServerHandle;
  readonly pool: RedoProcessPool;
  readonly client: Client<typeof WalRedoService>;
  readonly scratchRoot: string;
  close(): Promise<void>;
}

export async function startWalRedoHarness(options: Omit<WalRedoOptions, "logger" | "bundleDir"> & { logger?: Logger }): Promise<WalRedoHarness> {
  const bundleDir = await ensureTestBundle();
  const scratchRoot = await mkdtemp(path.join(os.tmpdir(), "pgmesh-walredo-test-"));
  await chmod(scratchRoot, 0o755);
  const compiled = compileWalRedoOptions({ logger: pino({ level: "silent" }), scratchRoot, ...options, bundleDir });
  const pool = new RedoProcessPool(compiled);
  const server = await startTestServer({
    services: [serviceOf({ service: WalRedoService, impl: createWalRedoService(compiled, pool) })],
    readMaxBytes: 64 * 1024 * 1024,
    metrics: processPoolMetrics(pool),
  });
  const client = createClient(WalRedoService, createClientTransport({ baseUrl: server.url, readMaxBytes: 64 * 1024 * 1024 }));
  return {
    server, pool, client, scratchRoot,
    async close() {
      await server.close();
      await pool.close();
      await rm(scratchRoot, { recursive: true, force: true });
    },
  };
}

async function procTable(): Promise<Map<number, { ppid: number; line: string }>> {
  const table = new Map<number, { ppid: number; line: string }>();
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, "utf8");
      const [, comm, state, ppid] = /^\d+ \((.*)\) (\S) (\d+)/.exec(stat) ?? [];
      table.set(Number(entry), { ppid: Number(ppid), line: `${entry} (${comm}) state ${state} ppid ${ppid}` });
    } catch {
      // gone meanwhile
    }
  }
  return table;
}

/** The pids and all their descendants, now (take it before killing: orphans get a new parent). */
export async function processTree(pids: readonly number[]): Promise<number[]> {
  const table = await procTable();
  const tree = new Set(pids.filter((p) => table.has(p)));
  for (let grew = true; grew;) {
    grew = false;
    for (const [pid, { ppid }] of table) {
      if (tree.has(ppid) && !tree.has(pid)) {
        tree.add(pid);
        grew = true;
      }
    }
  }
  return [...tree];
}

/** Those of `pids` that still exist, zombies included, described. */
export async function stillRunning(pids: readonly number[]): Promise<string[]> {
  const table = await procTable();
  return pids.filter((p) => table.has(p)).map((p) => table.get(p)!.line);
}

/**
 * Counts the walredo processes this process has spawned and not yet reaped,
 * from /proc: children whose command line has --wal-redo, and those seen so
 * before that are now zombies (a zombie's command line is empty).
 */
export function walredoChildCounter(): () => Promise<number> {
  const seen = new Set<number>();
  return async () => {
    let count = 0;
    for (const [pid, { ppid }] of await procTable()) {
      if (ppid !== process.pid) continue;
      try {
        if ((await readFile(`/proc/${pid}/cmdline`, "utf8")).split("\0").includes("--wal-redo")) seen.add(pid);
      } catch {
        // gone meanwhile
      }
      if (seen.has(pid)) count++;
    }
    return count;
  };
}

/** Runs body against a fresh harness and closes it however body ends. */
export async function withWalRedoHarness<T>(options: Parameters<typeof startWalRedoHarness>[0], body: (harness: WalRedoHarness) => Promise<T>): Promise<T> {
  const harness = await startWalRedoHarness(options);
  try {
    return await body(harness);
  } finally {
    await harness.close();
  }
}

/** A RedoRequest message for (part of) a page case of a workload. */
export function pageCaseRequest(
  workload: WalWorkload,
  c: PageCase,
  options: { requestId?: bigint; tenantId?: string; records?: PageCase["records"]; baseImage?: Uint8Array | undefined } = {},
): RedoRequest {
  const baseImage = "baseImage" in options ? options.baseImage : c.baseImage;
  return create(RedoRequestSchema, {
    requestId: options.requestId ?? 0n,
    tenantId: options.tenantId ?? "tenant-a",
    pgMajor: 15,
    tag: { spcOid: workload.spcOid, dbOid: workload.dbOid, relNumber: c.relation.relNumber, fork: 0, blockNumber: c.blockNumber },
    ...(baseImage ? { baseImage } : {}),
    records: options.records ?? c.records,
  });
}

/** Resolves once `check` holds, polling every 20 ms for up to `timeoutMs` (for state with no event to await, e.g. /proc). */
export async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
