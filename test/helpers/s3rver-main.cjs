// Runs s3rver's command line (same arguments) with two fixes for races that
// S3 itself does not have, so tests of concurrent replicas test pgmesh and not
// s3rver 3.7's file store:
// - deleting an object removes its directory when that leaves it empty; a put
//   into the same directory at that moment fails its write stream unhandled
//   and the whole server exits. Here deletes leave directories in place.
// - a listing walks the directory tree with readdirSync/statSync and answers
//   500 when a file or directory disappears mid-walk. Here it skips it.
"use strict";
const fs = require("fs");
const path = require("path");

const utils = require("s3rver/lib/utils");
utils.walk = function* walk(dir, recurseFilter) {
  let names;
  try {
    names = fs.readdirSync(dir);
  } catch (error) {
    if (error.code === "ENOENT") return;
    throw error;
  }
  for (const filename of names) {
    const filePath = path.posix.join(dir, filename);
    let stats;
    try {
      stats = fs.statSync(filePath);
    } catch (error) {
      if (error.code === "ENOENT") continue;
      throw error;
    }
    if (!stats.isDirectory()) yield filePath;
    else if (!recurseFilter || recurseFilter(filePath)) yield* walk(filePath, recurseFilter);
  }
};

// Loaded after the patch above: it takes `walk` from utils when it loads.
const FilesystemStore = require("s3rver/lib/stores/filesystem");
FilesystemStore.prototype.deleteObject = async function deleteObject(bucket, key) {
  await Promise.all(
    ["object", "object.md5", "metadata.json"].map((resource) =>
      fs.promises.unlink(this.getResourcePath(bucket, key, resource)).catch((error) => {
        if (error.code !== "ENOENT") throw error;
      }),
    ),
  );
};

require("s3rver/bin/s3rver.js");
