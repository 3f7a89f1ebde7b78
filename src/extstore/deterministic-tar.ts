import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { open, stat } from "node:fs/promises";
import { once } from "node:events";
import * as tar from "tar-stream";

/** One file of a bundle: where it goes in the bundle, where its bytes are now. */
export interface BundleFile {
  /** Relative bundle path, e.g. "lib/hypopg.so". */
  readonly path: string;
  /** Absolute path of a regular file to read. */
  readonly source: string;
}

/** Every entry gets this mtime, so the same files give the same bytes. */
const fixedMtime = new Date(0);

/**
 * Writes a bundle tar to `outPath` that depends only on the files' paths
 * and contents: entries sorted by path (each folder before what it holds),
 * folders made explicit, mtime 0, uid/gid 0, no owner names, modes 0755 for
 * folders and .so files and 0644 for the rest. Returns its sha256 and size.
 */
export async function writeDeterministicTar(
  files: readonly BundleFile[],
  outPath: string,
): Promise<{ sha256: string; size: number }> {
  const byPath = new Map<string, BundleFile>();
  for (const file of files) {
    if (byPath.has(file.path)) throw new Error(`two files map to bundle path ${file.path}`);
    byPath.set(file.path, file);
  }
  const folders = new Set<string>();
  for (const path of byPath.keys()) {
    const segments = path.split("/");
    for (let i = 1; i < segments.length; i += 1) folders.add(segments.slice(0, i).join("/"));
  }
  const entries = [
    ...[...folders].map((path) => ({ path, file: undefined as BundleFile | undefined })),
    ...[...byPath].map(([path, file]) => ({ path, file })),
  ].sort((a, b) => compareSegments(a.path, b.path));

  const pack = tar.pack();
  const out = await open(outPath, "w", 0o644);
  const hash = createHash("sha256");
  let size = 0;
  const written = (async () => {
    for await (const chunk of pack as AsyncIterable<Uint8Array>) {
      hash.update(chunk);
      size += chunk.byteLength;
      await out.write(chunk);
    }
  })();
  try {
    for (const { path, file } of entries) {
      const common = { mtime: fixedMtime, uid: 0, gid: 0, uname: "", gname: "" };
      if (file === undefined) {
        await addEntry(pack, { ...common, name: `${path}/`, type: "directory", mode: 0o755 });
        continue;
      }
      const { size: fileSize } = await stat(file.source);
      const mode = path.endsWith(".so") ? 0o755 : 0o644;
      await addEntry(pack, { ...common, name: path, type: "file", mode, size: fileSize }, file.source);
    }
    pack.finalize();
    await written;
  } finally {
    await out.close();
  }
  return { sha256: hash.digest("hex"), size };
}

type EntryHeader = Parameters<tar.Pack["entry"]>[0];

/** Adds one entry, streaming the source file with backpressure; resolves when tar-stream took it whole. */
async function addEntry(pack: tar.Pack, header: EntryHeader, source?: string): Promise<void> {
  let sink: ReturnType<tar.Pack["entry"]> | undefined;
  const done = new Promise<void>((resolve, reject) => {
    sink = pack.entry(header, (error) => (error ? reject(error) : resolve()));
  });
  if (source !== undefined) {
    for await (const chunk of createReadStream(source)) {
      if (!sink!.write(chunk)) await once(sink!, "drain");
    }
  }
  sink!.end(undefined); // streamx types want an argument
  await done;
}

/** Path order segment by segment, so "lib" < "lib/x" < "lib-x" never interleaves a folder's content. */
function compareSegments(a: string, b: string): number {
  const sa = a.split("/");
  const sb = b.split("/");
  for (let i = 0; i < Math.min(sa.length, sb.length); i += 1) {
    if (sa[i] !== sb[i]) return sa[i]! < sb[i]! ? -1 : 1;
  }
  return sa.length - sb.length;
}
