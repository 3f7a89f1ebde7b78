/**
 * deploy/: the Kubernetes manifests validate against the Kubernetes v1.27 schema
 * of their kind (vendored in test/fixtures/kubernetes, checked offline with
 * ajv), and what they and the container build file name exists: binaries,
 * their flags, secrets, copied paths. No cluster or container engine is needed.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { Ajv, type ValidateFunction } from "ajv";
import { parseAllDocuments } from "yaml";
import { beforeAll, describe, expect, it } from "vitest";

const execFileAsync = promisify(execFile);
const repo = path.resolve(import.meta.dirname, "..");
const manifestDir = path.join(repo, "deploy", "kubernetes");
const schemaDir = path.join(import.meta.dirname, "fixtures", "kubernetes", "v1.27");

interface Manifest {
  readonly file: string;
  readonly kind: string;
  readonly metadata: { readonly name: string };
  readonly [field: string]: unknown;
}

interface Container {
  readonly name: string;
  readonly args?: string[];
  readonly env?: { name: string; value?: string }[];
  readonly envFrom?: { secretRef?: { name: string } }[];
  readonly ports?: { name?: string; containerPort: number }[];
  readonly readinessProbe?: { grpc?: { port: number; service?: string } };
  readonly livenessProbe?: { grpc?: { port: number; service?: string } };
  readonly resources?: { requests?: Record<string, string> };
  readonly volumeMounts?: { name: string }[];
}

interface PodSpec {
  readonly containers: Container[];
  readonly volumes?: { name: string; secret?: { secretName: string } }[];
  readonly terminationGracePeriodSeconds?: number;
}

/** The pod spec of a Deployment or a Pod. */
function podSpecOf(manifest: Manifest): PodSpec {
  const spec = manifest.spec as { template?: { spec: PodSpec } } & PodSpec;
  return spec.template?.spec ?? spec;
}

const runnable = (manifests: readonly Manifest[]) => manifests.filter((m) => m.kind === "Deployment" || m.kind === "Pod");

describe("deploy/kubernetes", () => {
  let manifests: Manifest[];
  let validators: Map<string, ValidateFunction>;

  beforeAll(async () => {
    manifests = [];
    for (const file of (await readdir(manifestDir)).filter((f) => f.endsWith(".yaml")).sort()) {
      for (const document of parseAllDocuments(await readFile(path.join(manifestDir, file), "utf8"))) {
        expect(document.errors, `${file}: YAML errors`).toEqual([]);
        manifests.push({ ...(document.toJS() as Omit<Manifest, "file">), file } as Manifest);
      }
    }
    // Formats (int32, byte …) are OpenAPI's; the types and structure are what a wrong manifest gets wrong.
    const ajv = new Ajv({ allErrors: true, validateFormats: false });
    validators = new Map();
    for (const file of await readdir(schemaDir)) {
      const schema = JSON.parse(await readFile(path.join(schemaDir, file), "utf8")) as { properties: { kind: { enum: string[] } } };
      validators.set(schema.properties.kind.enum[0]!, ajv.compile(schema));
    }
  });

  it("holds a Deployment and a Service for each stateless service, a compute Pod and the Secrets", () => {
    const names = manifests.map((m) => `${m.kind}/${m.metadata.name}`).sort();
    expect(names).toEqual([
      "Deployment/epufs", "Deployment/extension-store", "Deployment/walredo",
      "Pod/compute-example",
      "Secret/pgmesh-auth-keys", "Secret/pgmesh-download-signing-key", "Secret/pgmesh-s3",
      "Service/epufs", "Service/extension-store", "Service/walredo",
    ]);
  });

  it("validates every manifest against the Kubernetes schema of its kind", () => {
    for (const { file, ...manifest } of manifests) {
      const validate = validators.get(manifest.kind);
      expect(validate, `${file}: no vendored schema for kind ${manifest.kind}`).toBeDefined();
      validate!(manifest);
      expect(validate!.errors ?? [], `${file}: ${manifest.kind}/${manifest.metadata.name}`).toEqual([]);
    }
  });

  it("is checked by a schema that refuses what Kubernetes refuses", () => {
    const deployment = manifests.find((m) => m.kind === "Deployment")!;
    const { file: _file, ...valid } = deployment;
    const validate = validators.get("Deployment")!;
    const misspelt = structuredClone(valid) as unknown as { spec: { template: { spec: Record<string, unknown> } } };
    misspelt.spec.template.spec.terminationGracePeriod = 30;
    expect(validate(misspelt)).toBe(false);
    const wrongType = structuredClone(valid) as unknown as { spec: { replicas: unknown } };
    wrongType.spec.replicas = "two";
    expect(validate(wrongType)).toBe(false);
  });

  it("runs binaries that exist in dist/cmd, with PGMESH_* variables each of them reads", async () => {
    for (const manifest of runnable(manifests)) {
      for (const container of podSpecOf(manifest).containers) {
        const [script] = container.args ?? [];
        expect(script, `${manifest.metadata.name}: the container's first argument names the binary`).toMatch(/^dist\/cmd\/[a-z-]+\.js$/);
        expect(existsSync(path.join(repo, script!)), `${script} exists`).toBe(true);
        const { stdout: help } = await execFileAsync(process.execPath, [path.join(repo, script!), "--help"]);
        for (const { name } of container.env ?? []) {
          if (name.startsWith("PGMESH_")) expect(help, `${script} reads ${name}`).toContain(`(env ${name}`);
        }
      }
    }
  });

  it("serves on every address of the pod, on the port its probes, ports and Service use", () => {
    for (const manifest of runnable(manifests)) {
      for (const container of podSpecOf(manifest).containers) {
        const listen = container.env?.find((e) => e.name === "PGMESH_LISTEN")?.value;
        expect(listen, `${manifest.metadata.name} listens on all addresses`).toMatch(/^0\.0\.0\.0:\d+$/);
        const port = Number(listen!.split(":")[1]);
        expect(container.readinessProbe?.grpc?.port, `${manifest.metadata.name} readiness is grpc.health.v1`).toBe(port);
        expect(container.livenessProbe?.grpc?.port, `${manifest.metadata.name} liveness is grpc.health.v1`).toBe(port);
        expect(container.ports?.find((p) => p.name === "grpc")?.containerPort).toBe(port);
        expect(Object.keys(container.resources?.requests ?? {}).sort()).toEqual(["cpu", "memory"]);
      }
      if (manifest.kind !== "Deployment") continue;
      const service = manifests.find((m) => m.kind === "Service" && m.metadata.name === manifest.metadata.name);
      const { ports } = service!.spec as { ports: { targetPort: string }[] };
      expect(ports.map((p) => p.targetPort)).toEqual(["grpc"]);
    }
  });

  it("gives each pod a termination grace longer than its draining, and compute-ctl room for shutdown and saving files", () => {
    for (const manifest of runnable(manifests)) {
      // The server drains for 10 s; compute-ctl first stops Postgres and saves files (up to 10 s).
      const atLeast = manifest.kind === "Pod" ? 45 : 20;
      expect(podSpecOf(manifest).terminationGracePeriodSeconds, manifest.metadata.name).toBeGreaterThanOrEqual(atLeast);
    }
  });

  it("mounts and reads only Secrets the manifests define", () => {
    const secrets = new Set(manifests.filter((m) => m.kind === "Secret").map((m) => m.metadata.name));
    for (const manifest of runnable(manifests)) {
      const spec = podSpecOf(manifest);
      const used = [
        ...(spec.volumes ?? []).flatMap((v) => (v.secret ? [v.secret.secretName] : [])),
        ...spec.containers.flatMap((c) => (c.envFrom ?? []).flatMap((e) => (e.secretRef ? [e.secretRef.name] : []))),
      ];
      for (const name of used) expect(secrets.has(name), `${manifest.metadata.name} uses Secret ${name}`).toBe(true);
    }
  });
});

describe("deploy/Dockerfile", () => {
  let lines: string[];

  beforeAll(async () => {
    lines = (await readFile(path.join(repo, "deploy", "Dockerfile"), "utf8")).split("\n").filter((l) => !l.startsWith("#"));
  });

  it("copies only paths that exist once setup has run, and lets them through its .dockerignore", async () => {
    const sources = lines.filter((l) => l.startsWith("COPY ")).flatMap((l) => l.split(/\s+/).slice(1, -1));
    expect(sources.length).toBeGreaterThan(0);
    const ignore = await readFile(path.join(repo, "deploy", "Dockerfile.dockerignore"), "utf8");
    for (const source of sources) {
      expect(existsSync(path.join(repo, source)), `COPY ${source}`).toBe(true);
      expect(ignore, `${source} is in the build context`).toContain(`!${source}`);
    }
  });

  it("installs with --omit=dev every package the copied dist/ imports", async () => {
    expect(lines).toContain("RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force");
    const { dependencies } = JSON.parse(await readFile(path.join(repo, "package.json"), "utf8")) as { dependencies: Record<string, string> };
    const { stdout } = await execFileAsync("grep", ["-rhoE", `from "[^."][^"]*"`, "dist/cmd", "dist/src", "dist/gen", "--include=*.js"], { cwd: repo });
    const packages = new Set(stdout.split("\n").filter((line) => line !== "").map((line) => line.slice(6, -1))
      .filter((module) => !module.startsWith("node:"))
      .map((module) => module.split("/").slice(0, module.startsWith("@") ? 2 : 1).join("/")));
    expect(packages.size).toBeGreaterThan(0);
    for (const name of packages) expect(dependencies, `dist/ imports ${name}`).toHaveProperty([name]);
  });

  it("starts a binary that exists in dist/cmd", () => {
    const cmd = lines.find((l) => l.startsWith("CMD "))!;
    const [script] = JSON.parse(cmd.slice(4)) as string[];
    expect(existsSync(path.join(repo, script!)), script).toBe(true);
  });
});
