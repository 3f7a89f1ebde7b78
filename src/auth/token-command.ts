import { access } from "node:fs/promises";
import { defineFlags, exitWithUsageError, parseCommandLine, parseDurationSec, UsageError, type CommandLineIo } from "../config/index.js";
import { scopes, type Scope } from "./claims.js";
import { generateKeyFiles, keyFilePaths } from "./dev-keys.js";
import { loadSigningKey, signToken } from "./token-signer.js";

const description = `Make Ed25519 key pairs and mint pgmesh bearer tokens (EdDSA JWTs).

Commands:
  keygen --out DIR    write signing-key.pem (private), public-keys.jwks.json and
                      public-key.pem (give either to servers as --auth-keys)
  mint --key FILE --scope SCOPE [--tenant T --timeline TL --endpoint E] [--ttl 1h]
                      print a token; SCOPE is one of ${scopes.join(", ")}`;

const flags = defineFlags({
  out: { type: "string", valueName: "DIR", default: ".pgmesh/keys", help: "keygen: directory for the key files" },
  force: { type: "boolean", help: "keygen: replace keys already in --out" },
  key: { type: "string", valueName: "FILE", help: "mint: the private key (signing-key.pem)" },
  scope: { type: "string", valueName: "SCOPE", help: `mint: ${scopes.join(", ")}` },
  tenant: { type: "string", valueName: "ID", help: "mint: tenant_id claim" },
  timeline: { type: "string", valueName: "ID", help: "mint: timeline_id claim" },
  endpoint: { type: "string", valueName: "ID", help: "mint: endpoint_id claim" },
  subject: { type: "string", valueName: "NAME", help: "mint: sub claim" },
  ttl: { type: "string", valueName: "DURATION", default: "1h", help: "mint: lifetime, e.g. 90s, 15m, 1h, 7d" },
});

/** The pgmesh-token command: `keygen` or `mint`, reading argv/env and writing through `io` (the process by default). */
export async function runTokenCommand(io: Partial<CommandLineIo> = {}): Promise<void> {
  const program = { name: "pgmesh-token", usage: "keygen|mint [flags]", description };
  const { command, values, ttlSec } = parseCommandLine(program, flags, {
    allowPositionals: true,
    io,
    validate({ positionals, values }) {
      const [command, ...extra] = positionals;
      if (command !== "keygen" && command !== "mint") {
        throw new UsageError(`expected a command, keygen or mint, got ${command === undefined ? "none" : `"${command}"`}`);
      }
      if (extra.length > 0) throw new UsageError(`unexpected arguments: ${extra.join(" ")}`);
      if (command === "mint") {
        if (values.key === undefined) throw new UsageError("mint needs --key FILE (the private key from keygen)");
        if (!(scopes as readonly string[]).includes(values.scope ?? "")) {
          throw new UsageError(`mint needs --scope, one of ${scopes.join(", ")}`);
        }
      }
      return { command, values, ttlSec: parseDurationSec(values.ttl, "--ttl") };
    },
  });
  const stdout = io.stdout ?? ((text: string) => void process.stdout.write(text));

  if (command === "keygen") {
    const exists = await access(keyFilePaths(values.out).privateKeyPath).then(
      () => true,
      () => false,
    );
    if (exists && !values.force) {
      exitWithUsageError(program, new UsageError(`${values.out} already holds a key; give --force to replace it`), io);
    }
    const files = await generateKeyFiles(values.out);
    stdout(`private key: ${files.privateKeyPath}\npublic JWKS: ${files.jwksPath}\npublic PEM:  ${files.publicKeyPath}\nkid:         ${files.kid}\n`);
    return;
  }
  const token = await signToken(
    await loadSigningKey(values.key!),
    {
      scope: values.scope as Scope,
      tenantId: values.tenant,
      timelineId: values.timeline,
      endpointId: values.endpoint,
      subject: values.subject,
    },
    { ttlSec },
  );
  stdout(token + "\n");
}
