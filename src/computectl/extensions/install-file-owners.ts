import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { lstat, mkdir, readFile } from "node:fs/promises";
import path from "node:path";
import { FileOwnerConflictError, type FileConflict } from "./extension-errors.js";
import { extensionDir, writeFileAtomic, type PgInstallDirs } from "./install-layout.js";

/** Who placed a file of the install, as recorded in the install's ownership record. */
export interface FileOwner {
  readonly extension: string;
  /** The bundle the file came from (for control files laid down at start-up: the bundle the spec names). */
  readonly bundle_sha256: string;
  /** sha256 of the file's bytes. */
  readonly sha256: string;
}

/** A file compute-ctl is about to place. */
export interface FileToPlace {
  /** Its bundle path ("lib/hstore.so", "share/extension/hstore.control"): the record's key. */
  readonly path: string;
  /** Absolute path in the install. */
  readonly target: string;
  /** sha256 of the new bytes. */
  readonly sha256: string;
  /** Moves the new bytes to `target` (a rename from staging, an atomic write). */
  put(): Promise<void>;
}

interface OwnersRecord {
  readonly format: 1;
  readonly files: Record<string, FileOwner>;
}

/*
 * The record lives in <sharedir>/extension/.pgmesh-file-owners.json (Postgres
 * reads only *.control and *.sql there; no bundle may carry that name). A
 * file it does not list was not placed by compute-ctl: it is the Postgres
 * install's. Writes to one install are serialised within the process; one
 * compute-ctl owns an install at a time.
 */
const recordName = ".pgmesh-file-owners.json";
const installLocks = new Map<string, Promise<unknown>>();

/**
 * Places an extension's files, never over a file another owner placed:
 * under the install's lock, each target must be absent, recorded as this
 * extension's, or (left as it is, not claimed) a file of the Postgres
 * install with exactly the new bytes. Otherwise it throws
 * FileOwnerConflictError naming every conflicting file and its owner, and
 * places nothing. The claims are recorded before the files are put, so a
 * crash in between leaves files the record already names as this
 * extension's. Returns the targets it put, in the order given.
 */
export async function placeOwnedFiles(
  dirs: PgInstallDirs,
  owner: { readonly extension: string; readonly bundleSha256: string },
  files: readonly FileToPlace[],
): Promise<string[]> {
  const recordPath = path.join(extensionDir(dirs), recordName);
  return withInstallLock(recordPath, async () => {
    const record = await readRecord(recordPath);
    const conflicts: FileConflict[] = [];
    const toPut: FileToPlace[] = [];
    for (const file of files) {
      const current = record.files[file.path];
      if (current !== undefined) {
        if (current.extension === owner.extension) toPut.push(file);
        else conflicts.push({ path: file.path, target: file.target, owner: `extension "${current.extension}"` });
        continue;
      }
      const existing = await lstat(file.target).catch((error: NodeJS.ErrnoException) => {
        if (error.code === "ENOENT") return undefined;
        throw error;
      });
      if (existing === undefined) toPut.push(file);
      else if (!existing.isFile() || (await sha256OfFile(file.target)) !== file.sha256) {
        conflicts.push({ path: file.path, target: file.target, owner: "the Postgres install" });
      }
    }
    if (conflicts.length > 0) throw new FileOwnerConflictError(owner.extension, owner.bundleSha256, conflicts);
    if (toPut.length === 0) return [];
    const claimed = { ...record.files };
    for (const file of toPut) claimed[file.path] = { extension: owner.extension, bundle_sha256: owner.bundleSha256, sha256: file.sha256 };
    await writeFileAtomic(recordPath, JSON.stringify({ format: 1, files: claimed } satisfies OwnersRecord, null, 2) + "\n");
    for (const file of toPut) {
      await mkdir(path.dirname(file.target), { recursive: true, mode: 0o755 });
      await file.put();
    }
    return toPut.map((file) => file.target);
  });
}

async function readRecord(recordPath: string): Promise<OwnersRecord> {
  let text: string;
  try {
    text = await readFile(recordPath, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return { format: 1, files: {} };
    throw error;
  }
  const record = (() => {
    try {
      return JSON.parse(text) as Partial<OwnersRecord> | null;
    } catch {
      return null;
    }
  })();
  if (record?.format !== 1 || typeof record.files !== "object" || record.files === null) {
    throw new Error(`${recordPath} is not a file ownership record compute-ctl wrote; restore it, or start from a fresh copy of the Postgres install`);
  }
  return record as OwnersRecord;
}

/** Runs `fn` after every earlier call for the same key has finished. */
async function withInstallLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
  const run = (installLocks.get(key) ?? Promise.resolve()).then(fn);
  const tail = run.catch(() => undefined);
  installLocks.set(key, tail);
  try {
    return await run;
  } finally {
    if (installLocks.get(key) === tail) installLocks.delete(key);
  }
}

/** sha256 (hex) of a file's bytes. */
export async function sha256OfFile(file: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}
