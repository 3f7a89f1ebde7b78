import { createHash, randomUUID } from "node:crypto";
import { open, readFile, stat, unlink } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";

/**
 * A lock on one key that works across processes sharing the directory: the
 * holder owns `<locksDir>/<sha256 of key>.lock`, created with O_EXCL. It is
 * held only while a put or delete compares and renames (microseconds to
 * milliseconds), so a lock older than this was left by a crashed process and
 * is broken.
 */
const staleLockMs = 10_000;

/** Runs `action` while holding the key's lock. */
export async function withKeyLock<T>(locksDir: string, key: string, action: () => Promise<T>): Promise<T> {
  const path = join(locksDir, `${createHash("sha256").update(key).digest("hex")}.lock`);
  const owner = randomUUID();
  await acquire(path, owner);
  try {
    return await action();
  } finally {
    // Only remove our own lock: if ours was broken as stale, the file is someone else's now.
    if ((await readFile(path, "utf8").catch(() => undefined)) === owner) await unlink(path).catch(() => undefined);
  }
}

async function acquire(path: string, owner: string): Promise<void> {
  for (let attempt = 0; ; attempt += 1) {
    try {
      const file = await open(path, "wx", 0o600);
      try {
        await file.writeFile(owner);
      } finally {
        await file.close();
      }
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    }
    const stats = await stat(path).catch(() => undefined);
    if (stats && Date.now() - stats.mtimeMs > staleLockMs) {
      await unlink(path).catch(() => undefined);
      continue;
    }
    // Another process holds it; no event crosses processes, so poll with a short, growing, jittered wait.
    await delay(Math.random() * Math.min(1 + attempt, 20));
  }
}
