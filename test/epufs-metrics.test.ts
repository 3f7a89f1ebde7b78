import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectErrorOf, content, endpointRef, getArchive, getFile, putFile } from "./helpers/epufs-calls.js";
import { startEpufsTestServer, type EpufsTestServer } from "./helpers/epufs-server.js";

const path = "pg_stat/pg_stat_statements.stat";

/** The value of one sample line of a /metrics scrape (0 when absent). */
async function sample(epufs: EpufsTestServer, series: string): Promise<number> {
  const text = await (await fetch(`${epufs.url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

describe("Epufs metrics", () => {
  let epufs: EpufsTestServer;
  beforeAll(async () => {
    epufs = await startEpufsTestServer({ epufs: { endpointQuotaBytes: 10_000 } });
  });
  afterAll(() => epufs?.close());

  it("counts the bytes of stored files in, and of files and archives out", async () => {
    const endpoint = endpointRef("t1", "tl1", "bytes");
    await putFile(epufs.client(), endpoint, path, content(3_000, 1));
    await getFile(epufs.client(), endpoint, path);
    const archive = await getArchive(epufs.client(), endpoint);
    expect(await sample(epufs, "pgmesh_epufs_bytes_in_total")).toBe(3_000);
    expect(await sample(epufs, 'pgmesh_epufs_bytes_out_total{kind="file"}')).toBe(3_000);
    expect(await sample(epufs, 'pgmesh_epufs_bytes_out_total{kind="archive"}')).toBe(archive.bytes);
  });

  it("counts puts refused by the endpoint quota", async () => {
    const endpoint = endpointRef("t1", "tl1", "quota");
    const refused = await connectErrorOf(putFile(epufs.client(), endpoint, path, content(20_000, 2)));
    expect(refused.code).toBe(Code.ResourceExhausted);
    expect(await sample(epufs, "pgmesh_epufs_quota_refusals_total")).toBe(1);
  });
});
