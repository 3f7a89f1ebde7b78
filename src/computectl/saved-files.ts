import { createReadStream, createWriteStream } from "node:fs";
import { chown, mkdir, readdir, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { createClient, type Client } from "@connectrpc/connect";
import tar from "tar-stream";
import { EndpointRefSchema, type EndpointRef } from "../../gen/pgmesh/common/v1/common_pb.js";
import { EpufsService, type PutFileRequestSchema } from "../../gen/pgmesh/epufs/v1/epufs_pb.js";
import { compileAllowedPaths, defaultAllowedPaths } from "../epufs/index.js";
import type { OsUser } from "../pg/index.js";
import { baseUrlsOf, type ComputeSpec } from "./compute-spec.js";
import { createClientTransport } from "../server/index.js";


const chunkBytes = 1024 * 1024;

export interface EndpointStorage {
  readonly addr: string;
  readonly token: string;
  readonly endpoint: EndpointRef;
}

/** Where Epufs keeps this compute's files, or undefined when the spec names no endpoint storage. */
export function endpointStorageOf(spec: ComputeSpec): EndpointStorage | undefined {
  if (!spec.endpointStorage) return undefined;
  return {
    addr: spec.endpointStorage.addr,
    token: spec.endpointStorage.token,
    endpoint: create(EndpointRefSchema, { tenantId: spec.tenantId!, timelineId: spec.timelineId!, endpointId: spec.endpointId! }),
  };
}

/**
 * Fetches the endpoint's archive (one tar) from Epufs and extracts its
 * regular files into `stagingDir`; returns their relative paths. Runs while
 * PGDATA is being laid down; placeSavedFiles() moves them in afterwards.
 * The call's own deadline bounds it: on Node 20 an AbortSignal.timeout()
 * inside AbortSignal.any() can be garbage-collected and never fire.
 */
export async function fetchSavedFiles(storage: EndpointStorage, stagingDir: string, signal: AbortSignal, timeoutMs: number): Promise<string[]> {
  await rm(stagingDir, { recursive: true, force: true });
  await mkdir(stagingDir, { recursive: true, mode: 0o700 });
  const epufs = epufsClient(storage);
  return extractArchive(epufs.getEndpointArchive({ endpoint: storage.endpoint }, { signal, timeoutMs }), stagingDir);
}

function epufsClient(storage: EndpointStorage): Client<typeof EpufsService> {
  return createClient(EpufsService, createClientTransport({ baseUrl: baseUrlsOf(storage.addr), ...(storage.token ? { token: storage.token } : {}) }));
}

async function extractArchive(response: AsyncIterable<{ chunk: Uint8Array }>, stagingDir: string): Promise<string[]> {
  const extract = tar.extract();
  const placed: string[] = [];
  const entries = (async () => {
    for await (const entry of extract) {
      const relative = entry.header.name.replace(/^\.\//, "");
      const target = path.resolve(stagingDir, relative);
      if (entry.header.type !== "file" || !target.startsWith(`${stagingDir}/`)) {
        entry.resume();
        continue;
      }
      await mkdir(path.dirname(target), { recursive: true, mode: 0o700 });
      await pipeline(entry, createWriteStream(target, { mode: 0o600 }));
      placed.push(relative);
    }
  })();
  await Promise.all([pipeline(Readable.from(chunksOf(response)), extract), entries]);
  return placed;
}

async function* chunksOf(response: AsyncIterable<{ chunk: Uint8Array }>): AsyncGenerator<Uint8Array> {
  for await (const message of response) yield message.chunk;
}

/** Moves staged files into PGDATA (owned by the Postgres user, 0600) and removes the staging directory. */
export async function placeSavedFiles(stagingDir: string, files: readonly string[], pgdata: string, user: OsUser): Promise<void> {
  for (const relative of files) {
    const target = path.join(pgdata, relative);
    await mkdir(path.dirname(target), { recursive: true, mode: 0o700 });
    await rename(path.join(stagingDir, relative), target);
    if ((process.getuid?.() ?? 0) === 0) await chown(target, user.uid, user.gid);
  }
  await rm(stagingDir, { recursive: true, force: true });
}

/** PGDATA-relative paths of the files Epufs's allow-list admits, looked up in the directories it names. */
async function allowListedFiles(pgdata: string): Promise<string[]> {
  const allowed = compileAllowedPaths(defaultAllowedPaths);
  const dirs = [...new Set(defaultAllowedPaths.map((pattern) => path.posix.dirname(pattern)))];
  const found: string[] = [];
  for (const dir of dirs) {
    const names = await readdir(path.join(pgdata, dir)).catch(() => [] as string[]);
    for (const name of names.sort()) {
      const relative = dir === "." ? name : `${dir}/${name}`;
      if (allowed.allows(relative)) found.push(relative);
    }
  }
  return found;
}

/** Uploads every file of Epufs's allow-list that Postgres left in PGDATA; returns the paths saved. */
export async function saveEndpointFiles(storage: EndpointStorage, pgdata: string, signal: AbortSignal): Promise<string[]> {
  const present: { relative: string; size: number }[] = [];
  for (const relative of await allowListedFiles(pgdata)) {
    const info = await stat(path.join(pgdata, relative)).catch(() => undefined);
    if (info?.isFile()) present.push({ relative, size: info.size });
  }
  const epufs = epufsClient(storage);
  await Promise.all(present.map(({ relative, size }) =>
    epufs.putFile(putFileMessages(storage.endpoint, relative, size, path.join(pgdata, relative)), { signal })));
  return present.map((p) => p.relative);
}

async function* putFileMessages(
  endpoint: EndpointRef, relative: string, size: number, file: string,
): AsyncGenerator<MessageInitShape<typeof PutFileRequestSchema>> {
  yield { msg: { case: "header", value: { endpoint, path: relative, size: BigInt(size) } } };
  for await (const chunk of createReadStream(file, { highWaterMark: chunkBytes })) {
    yield { msg: { case: "chunk", value: chunk as Buffer } };
  }
}
