import type { BigIntStats, Dirent } from "node:fs";
import { link, mkdir, open, type FileHandle, readdir, rename, rmdir, stat, unlink } from "node:fs/promises";
import { dirname, join } from "node:path";
import { BlobKeyConflictError, BlobNotFoundError, BlobPreconditionFailedError } from "./blob-errors.js";
import { compareBlobKeys, validateBlobKey, validateBlobPrefix } from "./blob-key.js";
import type {
  BlobInfo,
  BlobObject,
  BlobPage,
  BlobStore,
  DeletedCounts,
  GetOptions,
  ListOptions,
  PutOptions,
} from "./blob-store.js";
import { withKeyLock } from "./key-lock.js";
import { listAllPages } from "./list-all-pages.js";
import { decodePageToken, effectivePageSize, encodePageToken } from "./page-token.js";
import { SpoolSweeper, writeSpoolFile } from "./spool-file.js";

/** Read granularity of get(); chunks stay well under the 1 MiB message limit. */
const readChunkBytes = 256 * 1024;

/**
 * A blob store in a local directory: objects are files under `<root>/objects`,
 * named by their key. A put writes a spool file in `<root>/tmp` (same file
 * system), fsyncs it and renames it over the object, so readers see the old
 * file or the new one; listings never look into `tmp`.
 *
 * Conditions are enforced across processes sharing the directory: puts and
 * deletes of one key take a lock file in `<root>/locks` (see key-lock.ts), an
 * ifMatch put compares the etag under it, and an ifNoneMatch put links the
 * finished spool file into place, which fails if the name exists.
 */
export class LocalBlobStore implements BlobStore {
  readonly conditionalWrites = true;
  private readonly objectsDir: string;
  private readonly tmpDir: string;
  private readonly locksDir: string;
  private readonly sweeper: SpoolSweeper;

  private constructor(readonly root: string) {
    this.objectsDir = join(root, "objects");
    this.tmpDir = join(root, "tmp");
    this.locksDir = join(root, "locks");
    this.sweeper = new SpoolSweeper(this.tmpDir);
  }

  /** Creates the directories and removes spool files no live process owns (a killed process's). */
  static async open(root: string): Promise<LocalBlobStore> {
    const store = new LocalBlobStore(root);
    await mkdir(store.objectsDir, { recursive: true });
    await mkdir(store.tmpDir, { recursive: true });
    await mkdir(store.locksDir, { recursive: true });
    await store.sweeper.sweep();
    return store;
  }

  async put(key: string, body: AsyncIterable<Uint8Array>, options: PutOptions = {}): Promise<BlobInfo> {
    validateBlobKey(key);
    this.sweeper.sweepIfDue();
    const spool = await writeSpoolFile(this.tmpDir, key, body, { ...options, sync: true, md5: false });
    try {
      await withKeyLock(this.locksDir, key, async () => {
        if (options.ifMatch !== undefined) {
          const current = await statFile(this.pathOf(key));
          if (current === undefined || infoFromStats(key, current).etag !== options.ifMatch) {
            throw new BlobPreconditionFailedError(key, `its etag is "${options.ifMatch}" (ifMatch)`);
          }
        }
        if (options.ifNoneMatch === "*") await this.linkIntoPlace(key, spool.path);
        else await this.moveIntoPlace(key, spool.path);
      });
    } catch (error) {
      await unlink(spool.path).catch(() => undefined);
      throw error;
    }
    return infoFromStats(key, spool.stats);
  }

  async get(key: string, options: GetOptions = {}): Promise<BlobObject> {
    validateBlobKey(key);
    let file;
    try {
      file = await open(this.pathOf(key), "r");
    } catch (error) {
      if (isMissing(error)) throw new BlobNotFoundError(key);
      throw error;
    }
    // The open descriptor pins this version: a concurrent put renames a new
    // file over the name, and we keep reading the old one, whole.
    try {
      const stats = await file.stat({ bigint: true });
      if (!stats.isFile()) throw new BlobNotFoundError(key);
      return { info: infoFromStats(key, stats), body: readChunks(file, options.signal) };
    } catch (error) {
      await file.close();
      throw error;
    }
  }

  async head(key: string): Promise<BlobInfo | undefined> {
    validateBlobKey(key);
    const stats = await statFile(this.pathOf(key));
    return stats ? infoFromStats(key, stats) : undefined;
  }

  async list(prefix: string, options: ListOptions = {}): Promise<BlobPage> {
    validateBlobPrefix(prefix);
    const pageSize = effectivePageSize(options.pageSize);
    const after = decodePageToken(prefix, options.pageToken);
    const items: BlobInfo[] = [];
    for await (const key of this.keysInOrder(prefix, after)) {
      const stats = await statFile(this.pathOf(key));
      if (stats === undefined) continue; // deleted while we listed
      if (items.length === pageSize) {
        return { items, nextPageToken: encodePageToken(prefix, items[items.length - 1]!.key) };
      }
      items.push(infoFromStats(key, stats));
    }
    return { items };
  }

  listAll(prefix: string): AsyncIterable<BlobInfo> {
    return listAllPages(this, prefix);
  }

  async delete(key: string): Promise<boolean> {
    validateBlobKey(key);
    const path = this.pathOf(key);
    const removed = await withKeyLock(this.locksDir, key, async () => {
      if ((await statFile(path)) === undefined) return false;
      try {
        await unlink(path);
        return true;
      } catch (error) {
        if (isMissing(error)) return false;
        throw error;
      }
    });
    if (removed) await this.removeEmptyParents(dirname(path));
    return removed;
  }

  async deletePrefix(prefix: string): Promise<DeletedCounts> {
    validateBlobPrefix(prefix);
    let objects = 0;
    let bytes = 0;
    const touchedDirs = new Set<string>();
    for await (const key of this.keysInOrder(prefix, undefined)) {
      const path = this.pathOf(key);
      const stats = await statFile(path);
      if (stats === undefined) continue;
      try {
        await unlink(path);
      } catch (error) {
        if (isMissing(error)) continue;
        throw error;
      }
      objects += 1;
      bytes += Number(stats.size);
      touchedDirs.add(dirname(path));
    }
    // Deepest first, so a directory is empty by the time we reach it.
    for (const dir of [...touchedDirs].sort((a, b) => b.length - a.length)) {
      await this.removeEmptyParents(dir);
    }
    return { objects, bytes };
  }

  async close(): Promise<void> {
    // Nothing is held open between calls.
  }

  private pathOf(key: string): string {
    return join(this.objectsDir, key);
  }

  /** Renames a spool file onto the object's path, replacing what is there. */
  private async moveIntoPlace(key: string, spoolPath: string): Promise<void> {
    const target = this.pathOf(key);
    await this.placeWithParents(key, () => rename(spoolPath, target));
  }

  /**
   * Creates the key's parent directories and runs `place` (a rename or link
   * onto the key's path). A concurrent delete may remove an empty parent in
   * between, so retry a few times.
   */
  private async placeWithParents(key: string, place: () => Promise<void>): Promise<void> {
    const target = this.pathOf(key);
    for (let attempt = 0; ; attempt += 1) {
      try {
        await mkdir(dirname(target), { recursive: true });
        await place();
        return;
      } catch (error) {
        if (error instanceof BlobPreconditionFailedError) throw error;
        const code = errorCode(error);
        if (code === "ENOENT" && attempt < 5) continue;
        if (code === "EISDIR" || code === "ENOTDIR" || code === "EEXIST" || code === "ENOTEMPTY") {
          throw new BlobKeyConflictError(
            key,
            "the local store keeps keys as files, and this key is also a directory of other keys (or one of its parents is a key); choose keys that are not prefixes of each other",
          );
        }
        throw error;
      }
    }
  }

  /**
   * Hard-links a spool file as the object's path, which fails if the name
   * exists (the atomic create-only-if-absent of ifNoneMatch), then drops the
   * spool name.
   */
  private async linkIntoPlace(key: string, spoolPath: string): Promise<void> {
    const target = this.pathOf(key);
    await this.placeWithParents(key, async () => {
      try {
        await link(spoolPath, target);
      } catch (error) {
        if (errorCode(error) === "EEXIST" && (await statFile(target)) !== undefined) {
          throw new BlobPreconditionFailedError(key, 'it does not exist yet (ifNoneMatch "*")');
        }
        throw error;
      }
    });
    await unlink(spoolPath);
  }

  /** Removes empty directories from `dir` up to (not including) the objects root. */
  private async removeEmptyParents(dir: string): Promise<void> {
    let current = dir;
    while (current.startsWith(this.objectsDir + "/")) {
      try {
        await rmdir(current);
      } catch {
        return; // not empty, or gone already
      }
      current = dirname(current);
    }
  }

  /**
   * Keys under `prefix` greater than `after`, in byte order, lazily. A directory
   * sorts as its name plus "/", which makes a depth-first walk yield keys in
   * exactly the order S3 lists them; subtrees wholly before `after` are skipped.
   */
  private async *keysInOrder(prefix: string, after: string | undefined): AsyncGenerator<string> {
    const slash = prefix.lastIndexOf("/");
    const dirKey = slash < 0 ? "" : prefix.slice(0, slash + 1);
    yield* this.walk(dirKey, prefix, after);
  }

  private async *walk(dirKey: string, prefix: string, after: string | undefined): AsyncGenerator<string> {
    let entries: Dirent[];
    try {
      entries = await readdir(join(this.objectsDir, dirKey), { withFileTypes: true });
    } catch (error) {
      if (isMissing(error) || errorCode(error) === "ENOTDIR") return;
      throw error;
    }
    const named = entries
      .filter((entry) => entry.isFile() || entry.isDirectory())
      .map((entry) => ({ entry, sortKey: dirKey + entry.name + (entry.isDirectory() ? "/" : "") }))
      .sort((a, b) => compareBlobKeys(a.sortKey, b.sortKey));
    for (const { entry, sortKey } of named) {
      if (entry.isDirectory()) {
        // Only descend where keys can both match the prefix and follow `after`.
        if (!sortKey.startsWith(prefix) && !prefix.startsWith(sortKey)) continue;
        if (after !== undefined && compareBlobKeys(sortKey, after) < 0 && !after.startsWith(sortKey)) continue;
        yield* this.walk(sortKey, prefix, after);
      } else {
        if (!sortKey.startsWith(prefix)) continue;
        if (after !== undefined && compareBlobKeys(sortKey, after) <= 0) continue;
        yield sortKey;
      }
    }
  }
}

/** The version of a local file: a new inode (rename) or a new write changes it. */
function infoFromStats(key: string, stats: BigIntStats): BlobInfo {
  const etag = [stats.ino, stats.mtimeNs, stats.size].map((n) => n.toString(36)).join("-");
  return { key, size: Number(stats.size), etag, modified: new Date(Number(stats.mtimeMs)) };
}

async function statFile(path: string): Promise<BigIntStats | undefined> {
  try {
    const stats = await stat(path, { bigint: true });
    return stats.isFile() ? stats : undefined;
  } catch (error) {
    if (isMissing(error) || errorCode(error) === "ENOTDIR") return undefined;
    throw error;
  }
}

function errorCode(error: unknown): string | undefined {
  return typeof error === "object" && error !== null && "code" in error ? String(error.code) : undefined;
}

function isMissing(error: unknown): boolean {
  return errorCode(error) === "ENOENT";
}

/**
 * The file's bytes in chunks, closing it when the reader finishes or stops.
 * An abort surfaces as an error of the iteration, never as an 'error' event
 * nobody listens to (which would end the process).
 */
async function* readChunks(file: FileHandle, signal: AbortSignal | undefined): AsyncGenerator<Uint8Array> {
  try {
    for (;;) {
      signal?.throwIfAborted();
      const buffer = Buffer.allocUnsafe(readChunkBytes);
      const { bytesRead } = await file.read(buffer, 0, readChunkBytes, null);
      if (bytesRead === 0) return;
      yield buffer.subarray(0, bytesRead);
    }
  } finally {
    await file.close();
  }
}
