import { spawn } from "node:child_process";
import { once } from "node:events";
import { chmod, mkdtemp, readdir, rm, symlink } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { execa } from "execa";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../src/net/free-port.js";

const repo = path.resolve(import.meta.dirname, "..");

describe("the main job (pgmesh-demo)", () => {
  let dir: string;
  let output = "";
  let demo: ReturnType<typeof spawn>;

  /** Starts pgmesh-demo on `dir`; resolves once it prints its banner. */
  async function startDemo(): Promise<void> {
    output = "";
    const ports = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
    demo = spawn(process.execPath, [
      path.join(repo, "dist", "cmd", "pgmesh-demo.js"),
      "--dir", dir, "--bundle", path.join(repo, ".pgmesh", "bundle"),
      "--ports", ports.join(","), "--pg-port", String(await freePort()),
    ], { stdio: ["ignore", "pipe", "pipe"], detached: true }); // its own process group, as in a terminal
    await new Promise<void>((resolve, reject) => {
      const onData = (data: Buffer) => {
        output += data.toString();
        if (output.includes("Ctrl-C stops everything")) resolve();
      };
      demo.stdout!.on("data", onData);
      demo.stderr!.on("data", onData);
      demo.on("exit", (code) => reject(new Error(`pgmesh-demo exited with ${code}:\n${output}`)));
    });
  }

  async function appQuery(text: string): Promise<pg.QueryResultRow[]> {
    const client = new pg.Client({ connectionString: /connect: +psql '([^']+)'/.exec(output)![1]! });
    await client.connect();
    try {
      return (await client.query(text)).rows;
    } finally {
      await client.end();
    }
  }

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "pgmesh-demo-"));
    await chmod(dir, 0o755); // the compute's Postgres runs as the postgres user
    await symlink(path.join(repo, ".pgmesh", "debs"), path.join(dir, "debs"));
    await startDemo();
  });

  afterAll(async () => {
    if (demo.exitCode === null) {
      demo.kill("SIGKILL");
      await once(demo, "exit");
    }
    await rm(dir, { recursive: true, force: true });
  });

  it("prints the connection string and every start-up phase", () => {
    expect(output).toMatch(/connect: +psql 'postgresql:\/\/app:[^@]+@127\.0\.0\.1:\d+\/app'/);
    for (const phase of ["wait for spec", "base data", "saved files", "extensions", "start postgres", "config", "total"]) {
      expect(output).toMatch(new RegExp(`${phase} +\\d+ ms`));
    }
  });

  it("serves a compute where CREATE EXTENSION fetches a published extension on demand", async () => {
    const uri = /connect: +psql '([^']+)'/.exec(output)![1]!;
    const client = new pg.Client({ connectionString: uri });
    await client.connect();
    try {
      await client.query("CREATE EXTENSION hstore");
      const { rows } = await client.query("SELECT ('a=>1'::hstore -> 'a') AS value, current_user AS role");
      expect(rows[0]).toEqual({ value: "1", role: "app" });
    } finally {
      await client.end();
    }
  });

  it("has every service serve Prometheus metrics on /metrics: process, Node and per-RPC", async () => {
    const servicesLine = /services: +(.*)/.exec(output)![1]!;
    const services = Object.fromEntries([...servicesLine.matchAll(/([a-z-]+) (http:\/\/[\d.]+:\d+)/g)].map((m) => [m[1]!, m[2]!]));
    expect(Object.keys(services).sort()).toEqual(["compute-ctl", "epufs", "extension-store", "walredo"]);
    const scrapes = Object.fromEntries(
      await Promise.all(Object.entries(services).map(async ([name, url]) => [name, await (await fetch(`${url}/metrics`)).text()] as const)),
    );
    for (const text of Object.values(scrapes)) {
      expect(text).toMatch(/^process_cpu_user_seconds_total \d/m);
      expect(text).toContain("# TYPE grpc_server_handled_total counter");
    }
    expect(scrapes["extension-store"]).toMatch(/grpc_server_handled_total\{[^}]*grpc_method="PublishExtension",grpc_code="OK"\} \d/);
    expect(scrapes["compute-ctl"]).toContain('pgmesh_compute_state{state="running"} 1');
  });

  it("stops everything on Ctrl-C and saves the endpoint's files to Epufs", async () => {
    await appQuery("CREATE TABLE keep_me AS SELECT generate_series(1, 3) AS id");
    // A terminal's Ctrl-C: SIGINT to every process of the foreground process group.
    process.kill(-demo.pid!, "SIGINT");
    const [code] = await once(demo, "exit");
    expect(code).toBe(0);
    // pgrep exits 1 when nothing matches (and fails the test when it is not installed).
    const leftovers = await execa("pgrep", ["-a", "-f", dir], { reject: false });
    expect({ code: leftovers.exitCode, processes: leftovers.stdout }).toEqual({ code: 1, processes: "" });
    const saved = await readdir(path.join(dir, "epufs"), { recursive: true });
    expect(saved.some((file) => file.endsWith(path.join("pgdata", "pg_stat", "pg_stat_statements.stat")))).toBe(true);
  });

  it("has the tables created before Ctrl-C when it runs again on the same directory", async () => {
    await startDemo();
    const rows = await appQuery("SELECT count(*)::int AS n FROM keep_me");
    process.kill(-demo.pid!, "SIGINT");
    await once(demo, "exit");
    expect(rows).toEqual([{ n: 3 }]);
  });
});
