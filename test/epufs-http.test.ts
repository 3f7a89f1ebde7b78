import { request } from "node:http";
import { SignJWT } from "jose";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { content } from "./helpers/epufs-calls.js";
import { startEpufsTestServer, type EpufsTestServer } from "./helpers/epufs-server.js";
import { startS3rver, type S3rverHandle } from "./helpers/s3rver.js";
import { createTestKeys, type TestKeys } from "./helpers/test-keys.js";

const T = "tenant1";
const TL = "timeline1";
const E = "ep-one";
const base = `/tenants/${T}/timelines/${TL}/endpoints/${E}`;
const STATEMENTS = "pg_stat/pg_stat_statements.stat";
const PGSTAT = "pg_stat/pgstat.stat";

interface HttpResult {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: Buffer;
  json(): unknown;
}

/** One HTTP/1.1 request with the path sent exactly as given (no URL normalisation). */
function http(
  url: string,
  method: string,
  path: string,
  options: { token?: string; body?: Uint8Array; headers?: Record<string, string>; chunked?: boolean } = {},
): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${url}${path}`,
      {
        method,
        path,
        headers: {
          ...(options.token ? { authorization: `Bearer ${options.token}` } : {}),
          ...(options.body && !options.chunked ? { "content-length": String(options.body.byteLength) } : {}),
          ...options.headers,
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () => {
          const body = Buffer.concat(chunks);
          resolve({ status: res.statusCode!, headers: res.headers, body, json: () => JSON.parse(body.toString()) });
        });
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    if (options.chunked && options.body) {
      const half = options.body.byteLength >> 1;
      req.write(options.body.subarray(0, half));
      req.end(options.body.subarray(half));
    } else {
      req.end(options.body);
    }
  });
}

let keys: TestKeys;
let s3rver: S3rverHandle;

beforeAll(async () => {
  keys = await createTestKeys();
  s3rver = await startS3rver();
});
afterAll(async () => {
  await s3rver?.stop();
  await keys?.remove();
});

describe.each(["local directory", "S3 (s3rver)"])("Epufs HTTP routes over %s", (backend) => {
  let epufs: EpufsTestServer;
  let compute: string;
  let controlPlane: string;

  beforeEach(async () => {
    epufs = await startEpufsTestServer({
      keys,
      ...(backend.startsWith("S3") ? { s3rver } : {}),
      epufs: { maxFileBytes: 1024 * 1024 },
    });
    compute = await keys.computeToken(T, TL, E);
    controlPlane = await keys.mint({ scope: "control_plane" });
  });
  afterEach(() => epufs.close());

  it("stores a file with POST and reads it back with GET", async () => {
    const data = content(100_000, 1);
    const put = await http(epufs.url, "POST", `${base}/pgdata/${STATEMENTS}`, { token: compute, body: data });
    expect(put.status).toBe(200);
    expect(put.json()).toMatchObject({ path: STATEMENTS, size: 100_000 });
    const version = (put.json() as { version: string }).version;
    const got = await http(epufs.url, "GET", `${base}/pgdata/${STATEMENTS}`, { token: compute });
    expect(got.status).toBe(200);
    expect(got.headers.etag).toBe(`"${version}"`);
    expect(got.headers["content-type"]).toBe("application/octet-stream");
    expect(got.body.equals(data)).toBe(true);
  });

  it("stores a file with PUT, replacing the previous version", async () => {
    await http(epufs.url, "PUT", `${base}/pgdata/${PGSTAT}`, { token: compute, body: content(10, 2) });
    const put = await http(epufs.url, "PUT", `${base}/pgdata/${PGSTAT}`, { token: compute, body: content(20, 3) });
    expect(put.status).toBe(200);
    expect((await http(epufs.url, "GET", `${base}/pgdata/${PGSTAT}`, { token: compute })).body.equals(content(20, 3))).toBe(
      true,
    );
  });

  it("stores a body sent without a length (chunked)", async () => {
    const data = content(70_000, 4);
    const put = await http(epufs.url, "POST", `${base}/pgdata/${PGSTAT}`, {
      token: compute,
      body: data,
      chunked: true,
    });
    expect(put.status).toBe(200);
    expect((await http(epufs.url, "GET", `${base}/pgdata/${PGSTAT}`, { token: compute })).body.equals(data)).toBe(true);
  });

  it("answers 304 to GET with If-None-Match of the current version", async () => {
    const put = await http(epufs.url, "POST", `${base}/pgdata/${PGSTAT}`, { token: compute, body: content(10, 5) });
    const etag = `"${(put.json() as { version: string }).version}"`;
    const cached = await http(epufs.url, "GET", `${base}/pgdata/${PGSTAT}`, { token: compute, headers: { "if-none-match": etag } });
    expect(cached.status).toBe(304);
    expect(cached.body.length).toBe(0);
    const stale = await http(epufs.url, "GET", `${base}/pgdata/${PGSTAT}`, { token: compute, headers: { "if-none-match": '"x"' } });
    expect(stale.status).toBe(200);
  });

  it("deletes a file and answers 404 for it afterwards", async () => {
    await http(epufs.url, "POST", `${base}/pgdata/${PGSTAT}`, { token: compute, body: content(42, 6) });
    const deleted = await http(epufs.url, "DELETE", `${base}/pgdata/${PGSTAT}`, { token: compute });
    expect(deleted.status).toBe(200);
    expect(deleted.json()).toEqual({ files: 1, bytes: 42 });
    const missing = await http(epufs.url, "GET", `${base}/pgdata/${PGSTAT}`, { token: compute });
    expect(missing.status).toBe(404);
    expect(missing.json()).toEqual({
      code: "not_found",
      message: `file "${PGSTAT}" of endpoint ${T}/${TL}/${E} does not exist`,
    });
  });

  it("deletes an endpoint, a timeline and a tenant, answering the RFC's body with what was deleted", async () => {
    const put = async (tenant: string, timeline: string, endpoint: string, size: number) => {
      const path = `/tenants/${tenant}/timelines/${timeline}/endpoints/${endpoint}/pgdata/${PGSTAT}`;
      expect((await http(epufs.url, "POST", path, { token: controlPlane, body: content(size, 7) })).status).toBe(200);
    };
    await put(T, TL, E, 10);
    await put(T, TL, "ep-two", 20);
    await put(T, "timeline2", E, 30);
    await put("tenant2", TL, E, 40);
    const endpoint = await http(epufs.url, "DELETE", base, { token: controlPlane });
    expect([endpoint.status, endpoint.json()]).toEqual([200, { tenant: T, timeline: TL, endpoint: E, deleted: { files: 1, bytes: 10 } }]);
    const timeline = await http(epufs.url, "DELETE", `/tenants/${T}/timelines/${TL}`, { token: controlPlane });
    expect([timeline.status, timeline.json()]).toEqual([200, { tenant: T, timeline: TL, deleted: { files: 1, bytes: 20 } }]);
    const tenant = await http(epufs.url, "DELETE", `/tenants/${T}`, { token: controlPlane });
    expect([tenant.status, tenant.json()]).toEqual([200, { tenant: T, deleted: { files: 1, bytes: 30 } }]);
    expect((await epufs.store.list("")).items.map((item) => item.size)).toEqual([40]);
  });

  it("maps errors to HTTP statuses as connect does (RESOURCE_EXHAUSTED is 413) and stores nothing", async () => {
    const statusOf = async (method: string, path: string, token?: string, body?: Uint8Array) =>
      (await http(epufs.url, method, path, { ...(token ? { token } : {}), ...(body ? { body } : {}) })).status;
    expect(await statusOf("POST", `${base}/pgdata/${PGSTAT}`, undefined, content(5, 1))).toBe(401);
    expect(await statusOf("POST", `${base}/pgdata/${PGSTAT}`, "not-a-jwt", content(5, 1))).toBe(401);
    const other = await keys.computeToken(T, TL, "ep-two");
    expect(await statusOf("POST", `${base}/pgdata/${PGSTAT}`, other, content(5, 1))).toBe(403);
    expect(await statusOf("DELETE", base, compute)).toBe(403);
    expect(await statusOf("POST", `${base}/pgdata/../../x`, compute, content(5, 1))).toBe(400);
    expect(await statusOf("POST", `${base}/pgdata/%2e%2e/x`, compute, content(5, 1))).toBe(400);
    expect(await statusOf("POST", `${base}/pgdata/postgresql.conf`, compute, content(5, 1))).toBe(400);
    expect(await statusOf("POST", `${base}/pgdata/${PGSTAT}`, compute, content(1024 * 1024 + 1, 1))).toBe(413);
    expect(await statusOf("PATCH", `${base}/pgdata/${PGSTAT}`, compute)).toBe(405);
    expect(await statusOf("GET", `/tenants/${T}`, controlPlane)).toBe(405);
    expect((await epufs.store.list("")).items).toEqual([]);
  });

  it("answers 405 with Allow for a method the path does not take", async () => {
    const refused = await http(epufs.url, "GET", `/tenants/${T}/timelines/${TL}`, { token: controlPlane });
    expect(refused.status).toBe(405);
    expect(refused.headers.allow).toBe("DELETE");
    expect(refused.json()).toEqual({ code: "method_not_allowed", message: "GET is not allowed here; use DELETE" });
  });

  it("names the file, size, limit and flag in a 413", async () => {
    const refused = await http(epufs.url, "POST", `${base}/pgdata/${PGSTAT}`, { token: compute, body: content(2 * 1024 * 1024, 1) });
    expect(refused.status).toBe(413);
    expect(refused.json()).toEqual({
      code: "resource_exhausted",
      message: `file "${PGSTAT}" is 2 MiB; the limit is 1 MiB (--max-file-bytes); nothing was stored`,
    });
  });
});

describe("Epufs HTTP routes and bad percent-encoding", () => {
  let epufs: EpufsTestServer;

  beforeEach(async () => {
    epufs = await startEpufsTestServer({ keys });
  });
  afterEach(() => epufs.close());

  it.each([
    ["DELETE", "/tenants/%ff"],
    ["DELETE", "/tenants/%c0%ae"],
    ["DELETE", `/tenants/${T}/timelines/%E0%A4%A`],
    ["GET", `${base}/pgdata/pg_stat/%ff.stat`],
    ["GET", `/${T}/${TL}/${E}/pg_stat/%ff.stat`],
  ])("answers 400 naming the bad segment for %s %s, even without a token", async (method, path) => {
    const refused = await http(epufs.url, method, path);
    expect(refused.status).toBe(400);
    expect(refused.json()).toMatchObject({ code: "invalid_argument", message: expect.stringContaining("percent-encoding") });
  });
});

describe("Epufs with Neon's endpoint_storage routes", () => {
  let epufs: EpufsTestServer;
  const neonBase = `/${T}/${TL}/${E}`;
  /** A token as Neon's control plane mints it: ids and exp, no scope. */
  const neonToken = (claims: Record<string, string>) =>
    new SignJWT(claims).setProtectedHeader({ alg: "EdDSA", kid: keys.signingKey.kid }).setExpirationTime("1h").sign(keys.signingKey.key);

  beforeEach(async () => {
    epufs = await startEpufsTestServer({ keys });
  });
  afterEach(() => epufs.close());

  it("stores, reads and deletes a file with a token whose tenant_id, timeline_id and endpoint_id equal the route", async () => {
    const token = await neonToken({ tenant_id: T, timeline_id: TL, endpoint_id: E });
    expect((await http(epufs.url, "PUT", `${neonBase}/${PGSTAT}`, { token, body: content(42, 3) })).status).toBe(200);
    const read = await http(epufs.url, "GET", `${neonBase}/${PGSTAT}`, { token });
    expect([read.status, read.body]).toEqual([200, Buffer.from(content(42, 3))]);
    expect((await http(epufs.url, "DELETE", `${neonBase}/${PGSTAT}`, { token })).status).toBe(200);
    expect((await http(epufs.url, "GET", `${neonBase}/${PGSTAT}`, { token })).status).toBe(404);
  });

  it("answers 401 to a token for another endpoint, and stores nothing", async () => {
    const other = await neonToken({ tenant_id: T, timeline_id: TL, endpoint_id: "ep-two" });
    const refused = await http(epufs.url, "PUT", `${neonBase}/${PGSTAT}`, { token: other, body: content(5, 1) });
    expect(refused.status).toBe(401);
    expect(refused.json()).toMatchObject({ message: `the token's endpoint_id claim is "ep-two", but this route needs "${E}"` });
    expect((await epufs.store.list("")).items).toEqual([]);
  });

  it("deletes a tenant's files with a token naming only that tenant, and refuses one that also names a timeline", async () => {
    const token = await neonToken({ tenant_id: T, timeline_id: TL, endpoint_id: E });
    await http(epufs.url, "PUT", `${neonBase}/${PGSTAT}`, { token, body: content(10, 2) });
    const timelineToken = await neonToken({ tenant_id: T, timeline_id: TL });
    expect((await http(epufs.url, "DELETE", `/${T}`, { token: timelineToken })).status).toBe(401);
    const deleted = await http(epufs.url, "DELETE", `/${T}`, { token: await neonToken({ tenant_id: T }) });
    expect([deleted.status, deleted.json()]).toEqual([200, { tenant: T, deleted: { files: 1, bytes: 10 } }]);
  });

  it("answers GET /status with 200", async () => {
    expect((await http(epufs.url, "GET", "/status")).status).toBe(200);
  });
});
