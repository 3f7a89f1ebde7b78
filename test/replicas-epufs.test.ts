import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { EpufsService } from "../gen/pgmesh/epufs/v1/epufs_pb.js";
import { createClientTransport } from "../src/server/index.js";
import { content, endpointRef, getFile, putFile, type EpufsClient } from "./helpers/epufs-calls.js";
import { replicaEnvironment } from "./helpers/replica-environment.js";
import { spawnServiceProcess } from "./helpers/service-process.js";

const environment = replicaEnvironment();

describe.each(environment.stores)("two Epufs replicas on $name", (store) => {
  it("hold the per-endpoint quota together: concurrent puts split over both never exceed it", async () => {
    const { url, env } = store.location("quota");
    const keys = environment.keys();
    const args = ["--storage", url, "--auth-keys", keys.jwksPath, "--endpoint-quota-bytes", "1000000"];
    const replicas = await Promise.all([spawnServiceProcess("epufs", args, env), spawnServiceProcess("epufs", args, env)]);
    const token = await keys.computeToken("t1", "tl1", "ep1");
    const clients: EpufsClient[] = replicas.map((replica) =>
      createClient(EpufsService, createClientTransport({ baseUrl: replica.url, token })),
    );
    const ep = endpointRef("t1", "tl1", "ep1");
    const fileBytes = 200 * 1024;
    const puts = await Promise.allSettled(
      Array.from({ length: 6 }, (_, i) =>
        putFile(clients[i % 2]!, ep, `pg_stat/db_${i}.stat`, content(fileBytes, i), { size: fileBytes }),
      ),
    );
    // 4 × 200 KiB fit in 1,000,000 bytes, a 5th does not.
    expect(puts.filter((put) => put.status === "fulfilled")).toHaveLength(4);
    for (const put of puts) {
      if (put.status === "rejected") expect(ConnectError.from(put.reason).code).toBe(Code.ResourceExhausted);
    }
    const stored = (await clients[0]!.listFiles({ endpoint: ep })).files;
    expect(stored.reduce((sum, file) => sum + Number(file.size), 0)).toBe(4 * fileBytes);
  });
});

describe.each(environment.stores)("a client of two Epufs replicas on $name", (store) => {
  it("fails over to the live replica when one is killed, for unary, client-streaming and server-streaming calls", async () => {
    const { url, env } = store.location("failover");
    const keys = environment.keys();
    const args = ["--storage", url, "--auth-keys", keys.jwksPath];
    const [first, second] = await Promise.all([spawnServiceProcess("epufs", args, env), spawnServiceProcess("epufs", args, env)]);
    const token = await keys.computeToken("t1", "tl1", "ep1");
    const client = createClient(EpufsService, createClientTransport({ baseUrl: [first!.url, second!.url], token }));
    const ep = endpointRef("t1", "tl1", "ep1");
    const before = content(1000, 1);
    await putFile(client, ep, "autoprewarm.blocks", before);

    await first!.kill();
    const after = content(3000, 2);
    expect((await putFile(client, ep, "autoprewarm.blocks", after)).size).toBe(3000n);
    expect((await getFile(client, ep, "autoprewarm.blocks")).data.equals(after)).toBe(true);
    expect((await client.listFiles({ endpoint: ep })).files.map((file) => file.path)).toEqual(["autoprewarm.blocks"]);
  });
});
