import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { lstat, readdir, readlink } from "node:fs/promises";
import path from "node:path";

/** One entry of a version tree; paths are relative to v<major>/. */
export type BundleEntry =
  | { readonly path: string; readonly type: "file"; readonly size: number; readonly sha256: string; readonly mode: string }
  | { readonly path: string; readonly type: "symlink"; readonly target: string }
  | { readonly path: string; readonly type: "device"; readonly mode: string };

export interface VersionManifest {
  readonly major: number;
  /** `postgres --version`, e.g. "postgres (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)". */
  readonly postgresVersion: string;
  /** ICU's full version from the library file name, e.g. "72.1": a change can reorder ICU collations. */
  readonly icuVersion: string;
  /** e.g. "2.36": a change can reorder libc collations. */
  readonly glibcVersion: string;
  /** Debian package versions the tree was copied from. */
  readonly packages: Readonly<Record<string, string>>;
  /** Relative to v<major>/: the dynamic loader, the library directory, the walredo template cluster. */
  readonly interpreter: string;
  readonly libraryDir: string;
  readonly walredoTemplate: string;
  /** The pgmesh C modules built from pgext/ into lib/. */
  readonly modules: readonly string[];
  /** Every file, symlink and device node, except the template cluster (it differs on every build). */
  readonly entries: readonly BundleEntry[];
}

export interface BundleManifest {
  readonly formatVersion: 1;
  /** Hash of everything the bundle is built from (package versions, pgext/ sources, this builder): equal means up to date. */
  readonly inputFingerprint: string;
  readonly versions: Readonly<Record<string, VersionManifest>>;
}

async function sha256(file: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/** Lists a tree in path order, hashing files; `skip` holds relative paths left out with everything below them. */
export async function listTree(root: string, skip: ReadonlySet<string>, rel = ""): Promise<BundleEntry[]> {
  const entries: BundleEntry[] = [];
  const names = (await readdir(path.join(root, rel))).sort();
  for (const name of names) {
    const relPath = rel === "" ? name : `${rel}/${name}`;
    if (skip.has(relPath)) continue;
    const full = path.join(root, relPath);
    const stat = await lstat(full);
    const mode = (stat.mode & 0o7777).toString(8).padStart(4, "0");
    if (stat.isSymbolicLink()) entries.push({ path: relPath, type: "symlink", target: await readlink(full) });
    else if (stat.isDirectory()) entries.push(...await listTree(root, skip, relPath));
    else if (stat.isFile()) entries.push({ path: relPath, type: "file", size: stat.size, sha256: await sha256(full), mode });
    else entries.push({ path: relPath, type: "device", mode });
  }
  return entries;
}

/** sha256 over a tree's relative paths and file contents, `skip` names left out. */
export async function hashTree(root: string, skip: (name: string) => boolean): Promise<string> {
  const hash = createHash("sha256");
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await readdir(path.join(root, rel))).sort()) {
      if (skip(name)) continue;
      const relPath = rel === "" ? name : `${rel}/${name}`;
      const stat = await lstat(path.join(root, relPath));
      if (stat.isDirectory()) await walk(relPath);
      else if (stat.isFile()) hash.update(`${relPath}\0${await sha256(path.join(root, relPath))}\0`);
    }
  };
  await walk("");
  return hash.digest("hex");
}

/** Two manifests describe the same bundle. */
export function sameBundle(a: BundleManifest, b: BundleManifest): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
