import { isAbsolute } from "node:path";
import { fileURLToPath } from "node:url";
import { BlobStoreUrlError } from "./blob-errors.js";
import type { BlobStore } from "./blob-store.js";
import { compileBlobStoreOptions, type BlobStoreOptions } from "./blob-store-options.js";
import { LocalBlobStore } from "./local-blob-store.js";
import { S3BlobStore } from "./s3-blob-store.js";
import { removeOrphanedSpoolFiles } from "./spool-file.js";

/**
 * Opens the store a `--storage` URL names: `file:///abs/dir` (a local
 * directory, created if missing) or `s3://bucket/prefix`.
 */
export async function openBlobStore(url: string, options: BlobStoreOptions = {}): Promise<BlobStore> {
  const compiled = compileBlobStoreOptions(options);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new BlobStoreUrlError(url, "it is not a URL");
  }
  switch (parsed.protocol) {
    case "file:": {
      if (parsed.host !== "") throw new BlobStoreUrlError(url, "a file URL has no host (three slashes)");
      const dir = fileURLToPath(parsed);
      if (!isAbsolute(dir)) throw new BlobStoreUrlError(url, "the directory must be absolute");
      return LocalBlobStore.open(dir.replace(/\/+$/, "") || "/");
    }
    case "s3:": {
      const bucket = parsed.hostname;
      if (bucket === "") throw new BlobStoreUrlError(url, "it names no bucket");
      const prefix = decodeURIComponent(parsed.pathname).replace(/^\/+|\/+$/g, "");
      if (prefix !== "" && prefix.split("/").some((segment) => segment === "" || segment === "." || segment === "..")) {
        throw new BlobStoreUrlError(url, 'the prefix has an empty, "." or ".." segment');
      }
      await removeOrphanedSpoolFiles(compiled.spoolDir);
      const settings = {
        bucket,
        prefix,
        region: compiled.s3Region,
        spoolDir: compiled.spoolDir,
        ...(compiled.s3Endpoint ? { endpoint: compiled.s3Endpoint } : {}),
        ...(compiled.s3Credentials ? { credentials: compiled.s3Credentials } : {}),
      };
      const conditionalWrites =
        compiled.s3ConditionalWrites === "auto"
          ? await S3BlobStore.probeConditionalWrites(settings)
          : compiled.s3ConditionalWrites === "on";
      return new S3BlobStore({ ...settings, conditionalWrites });
    }
    default:
      throw new BlobStoreUrlError(url, `the scheme "${parsed.protocol}" is not supported`);
  }
}
