import { createReadStream } from "node:fs";
import { chmod, lstat, mkdir, mkdtemp, readdir, readlink, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { Code, ConnectError } from "@connectrpc/connect";
import { execa } from "execa";
import tar from "tar-stream";
import { chownTree, outputTail, pgProgram, runAsPrefix, systemPgBinaries, type OsUser } from "../pg/index.js";
import { quoteInput } from "../errors/index.js";

export interface InitdbArchiveOptions {
  /** Bundle directory; undefined runs the system's binaries (/usr/lib/postgresql/<major>/bin). */
  readonly bundleDir: string | undefined;
  readonly pgMajor: number;
  readonly user: OsUser;
  readonly superuser: string;
  readonly locale: string;
  readonly encoding: string;
  /** Where the temporary PGDATA goes (default os.tmpdir()). */
  readonly tempRoot?: string;
  /** Largest chunk yielded (default 1 MiB). */
  readonly chunkBytes?: number;
  readonly signal?: AbortSignal;
}

const SUPERUSER = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;
const LOCALE = /^[A-Za-z0-9_.@-]{1,64}$/;
const ENCODING = /^[A-Za-z0-9_-]{1,32}$/;

function invalid(message: string): ConnectError {
  return new ConnectError(message, Code.InvalidArgument);
}

/** INVALID_ARGUMENT for a superuser, locale or encoding initdb must not see. */
export function checkInitdbParameters(superuser: string, locale: string, encoding: string): void {
  if (!SUPERUSER.test(superuser) || superuser.toLowerCase().startsWith("pg_")) {
    throw invalid(`superuser ${quoteInput(superuser)} is not a valid role name; use a letter or _ then up to 62 letters, digits or _, not starting with pg_`);
  }
  if (!LOCALE.test(locale)) throw invalid(`locale ${quoteInput(locale)} is not a locale name (e.g. C.UTF-8, en_US.UTF-8)`);
  if (!ENCODING.test(encoding)) throw invalid(`encoding ${quoteInput(encoding)} is not an encoding name (e.g. UTF8)`);
}

function initdbCommand(options: InitdbArchiveOptions, dataDir: string): string[] {
  const program = options.bundleDir
    ? [path.join(options.bundleDir, "launcher"), String(options.pgMajor), "initdb"]
    : [pgProgram(systemPgBinaries(options.pgMajor), "initdb")];
  return [
    ...runAsPrefix(options.user), ...program,
    "-D", dataDir, "-U", options.superuser, "--locale", options.locale, "--encoding", options.encoding,
    "--auth", "trust", "--no-sync", "--no-instructions",
  ];
}

/** Adds dir's tree to the pack, files streamed with backpressure. */
async function packTree(pack: tar.Pack, root: string, relative: string): Promise<void> {
  for (const name of (await readdir(path.join(root, relative))).sort()) {
    const rel = relative ? `${relative}/${name}` : name;
    const full = path.join(root, rel);
    const stat = await lstat(full);
    const header = { name: rel, mode: stat.mode & 0o7777, mtime: stat.mtime };
    if (stat.isDirectory()) {
      pack.entry({ ...header, type: "directory" });
      await packTree(pack, root, rel);
    } else if (stat.isSymbolicLink()) {
      pack.entry({ ...header, type: "symlink", linkname: await readlink(full) });
    } else if (stat.isFile()) {
      const entry = pack.entry({ ...header, type: "file", size: stat.size });
      await pipeline(createReadStream(full), entry);
    }
  }
}

/**
 * Runs initdb as the unprivileged user into a fresh temporary directory and
 * yields the new PGDATA as a POSIX tar, in chunks of at most chunkBytes, as
 * fast as the consumer takes them. The temporary directory is removed however
 * the stream ends (finished, failed or cancelled).
 */
export async function* initdbArchive(options: InitdbArchiveOptions): AsyncGenerator<Uint8Array> {
  checkInitdbParameters(options.superuser, options.locale, options.encoding);
  const chunkBytes = options.chunkBytes ?? 1024 * 1024;
  const root = await mkdtemp(path.join(options.tempRoot ?? os.tmpdir(), "pgmesh-initdb-"));
  const pack = tar.pack();
  try {
    await chmod(root, 0o755);
    const dataDir = path.join(root, "pgdata");
    await mkdir(dataDir, { mode: 0o700 });
    await chownTree(dataDir, options.user);
    const [program, ...args] = initdbCommand(options, dataDir);
    const result = await execa(program!, args, { all: true, reject: false, cancelSignal: options.signal, env: { LC_ALL: "C" } });
    if (result.isCanceled) throw new ConnectError("Initdb was cancelled", Code.Canceled);
    if (result.exitCode !== 0) {
      const tail = outputTail(result.all, 5);
      const code = /locale|encoding|superuser|role name/i.test(tail) ? Code.InvalidArgument : Code.Internal;
      throw new ConnectError(`initdb (Postgres ${options.pgMajor}, locale ${options.locale}, encoding ${options.encoding}) failed: ${tail}`, code);
    }
    const packing = packTree(pack, dataDir, "").then(() => pack.finalize(), (err: Error) => pack.destroy(err));
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    for await (const piece of pack as AsyncIterable<Buffer>) {
      for (let offset = 0; offset < piece.length;) {
        const take = Math.min(piece.length - offset, chunkBytes - pendingBytes);
        pending.push(piece.subarray(offset, offset + take));
        pendingBytes += take;
        offset += take;
        if (pendingBytes === chunkBytes) {
          yield Buffer.concat(pending, pendingBytes);
          pending = [];
          pendingBytes = 0;
        }
      }
    }
    await packing;
    if (pendingBytes > 0) yield Buffer.concat(pending, pendingBytes);
  } finally {
    pack.destroy();
    await rm(root, { recursive: true, force: true });
  }
}
