import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { content, endpointRef, getFile } from "./helpers/epufs-calls.js";
import { startEpufsTestServer, type EpufsTestServer } from "./helpers/epufs-server.js";
import { createTestKeys, type TestKeys } from "./helpers/test-keys.js";

const run = promisify(execFile);
const python = "/usr/bin/python3";
// Debian bookworm's python3-grpc-tools bundles libprotoc 3.5.1, which rejects proto3 `optional`
// (PutFileHeader.size): generate with Debian's protoc 3.21 and its gRPC Python plugin instead.
const protoc = "/usr/bin/protoc";
const grpcPythonPlugin = "/usr/bin/grpc_python_plugin";

let keys: TestKeys;
let epufs: EpufsTestServer;
let work: string;

beforeAll(async () => {
  // Fails (does not skip) when a package is missing: scripts/setup.sh installs
  // python3-grpcio python3-protobuf protobuf-compiler protobuf-compiler-grpc.
  await run(python, ["-c", "import grpc, google.protobuf"]).catch((error: Error) => {
    throw new Error(`${python} cannot import grpc/protobuf (apt-get install python3-grpcio python3-protobuf): ${error.message}`);
  });
  work = await mkdtemp(join(tmpdir(), "pgmesh-python-"));
  await run(protoc, [
    `-I${resolve(import.meta.dirname, "../proto")}`,
    `--python_out=${work}`,
    `--grpc_python_out=${work}`,
    `--plugin=protoc-gen-grpc_python=${grpcPythonPlugin}`,
    resolve(import.meta.dirname, "../proto/pgmesh/epufs/v1/epufs.proto"),
    resolve(import.meta.dirname, "../proto/pgmesh/common/v1/common.proto"),
  ]).catch((error: Error) => {
    throw new Error(`generating the Python client failed (apt-get install protobuf-compiler protobuf-compiler-grpc): ${error.message}`);
  });
  keys = await createTestKeys();
  epufs = await startEpufsTestServer({ keys });
});
afterAll(async () => {
  await epufs?.close();
  await keys?.remove();
  if (work) await rm(work, { recursive: true, force: true });
});

describe("Epufs with a generated Python client", () => {
  it("round-trips a file: put as a client stream, get as a server stream, with a real JWT", async () => {
    const data = content(700_000, 77);
    const file = join(work, "payload.bin");
    await writeFile(file, data);
    const token = await keys.computeToken("tenant1", "timeline1", "ep-one");
    const path = "pg_stat/pg_stat_statements.stat";
    const { stdout } = await run(python, [
      resolve(import.meta.dirname, "python/epufs_roundtrip.py"),
      work,
      new URL(epufs.url).host,
      token,
      "tenant1",
      "timeline1",
      "ep-one",
      path,
      file,
    ]);
    const result = JSON.parse(stdout) as Record<string, unknown>;
    expect(result).toMatchObject({
      stored_size: data.length,
      info_size: data.length,
      equal: true,
      not_modified: true,
      traversal: "INVALID_ARGUMENT",
    });
    expect(result.chunks).toBeGreaterThan(0);
    // What Python stored is what pgmesh's own client reads back.
    const got = await getFile(epufs.client(token), endpointRef("tenant1", "timeline1", "ep-one"), path);
    expect(got.info.version).toBe(result.version);
    expect(got.data.equals(data)).toBe(true);
  });
});
