import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { s3ConditionalWritesModes, type S3ConditionalWrites } from "../blob/index.js";
import { defineFlags } from "./parse-command-line.js";
import type { FlagValues } from "./flags.js";
import { UsageError } from "./usage-error.js";

/** The services and their default ports (DESIGN.md "Conventions every binary shares"). */
export const servicePorts = {
  "extension-store": 7101,
  epufs: 7102,
  "compute-ctl": 7103,
  walredo: 7104,
  "timeline-service": 7105,
} as const;

export type ServiceName = keyof typeof servicePorts;

export const logLevelNames = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevelName = (typeof logLevelNames)[number];

/** The flags every server binary shares; spread them into the binary's own table. */
export function serverFlags(service: ServiceName) {
  return defineFlags({
    listen: {
      type: "string",
      valueName: "HOST:PORT",
      default: `127.0.0.1:${servicePorts[service]}`,
      help: "Address to serve gRPC, gRPC-Web, Connect and HTTP on (port 0: any free port)",
    },
    "auth-keys": {
      type: "string",
      valueName: "FILE",
      help: "Public keys that verify bearer tokens: JWKS JSON or PEM (Ed25519)",
    },
    "insecure-no-auth": {
      type: "boolean",
      help: "Accept every call without a token (development only; logged loudly)",
    },
    "log-level": {
      type: "string",
      valueName: "LEVEL",
      default: "info",
      help: `Log level: ${logLevelNames.join(", ")}`,
    },
  });
}

/** serverFlags plus the blob storage flags, for the services that keep their data in blob storage. */
export function serviceFlags(service: ServiceName, cwd: string = process.cwd()) {
  const { listen, ...rest } = serverFlags(service);
  return defineFlags({
    listen,
    storage: {
      type: "string",
      valueName: "URL",
      default: `file://${resolve(cwd, ".pgmesh", service)}`,
      help: "Blob storage: file:///abs/dir or s3://bucket/prefix (with the standard AWS_* environment)",
    },
    "s3-conditional-writes": {
      type: "string",
      valueName: "auto|on|off",
      default: "auto",
      help: "Whether the S3 server enforces conditional puts (If-None-Match/If-Match): auto probes it at start; s3rver and some S3-compatible servers ignore them, and then replicas coordinate by listing claims instead",
    },
    ...rest,
  });
}

export type ServerFlagValues = FlagValues<ReturnType<typeof serverFlags>>;
export type ServiceFlagValues = FlagValues<ReturnType<typeof serviceFlags>>;

/** The validated shared configuration of a server binary. */
export interface ServerConfig {
  readonly host: string;
  readonly port: number;
  /** Set unless insecureNoAuth. */
  readonly authKeysPath: string | undefined;
  readonly insecureNoAuth: boolean;
  readonly logLevel: LogLevelName;
}

/** ServerConfig plus blob storage. */
export interface ServiceConfig extends ServerConfig {
  readonly storageUrl: string;
  /** The local directory of file:// storage, to check at start (undefined for s3://). */
  readonly storageDir: string | undefined;
  readonly s3ConditionalWrites: S3ConditionalWrites;
}

/** Validates the flags every server shares; throws UsageError naming the flag. */
export function compileServerConfig(values: ServerFlagValues): ServerConfig {
  const { host, port } = parseListen(values.listen);
  if (values.authKeys === undefined && !values.insecureNoAuth) {
    throw new UsageError("give --auth-keys FILE to verify bearer tokens, or --insecure-no-auth to accept every call");
  }
  if (values.authKeys !== undefined && values.insecureNoAuth) {
    throw new UsageError("--auth-keys and --insecure-no-auth exclude each other; give one");
  }
  if (!(logLevelNames as readonly string[]).includes(values.logLevel)) {
    throw new UsageError(`--log-level must be one of ${logLevelNames.join(", ")}, got "${values.logLevel}"`);
  }
  return { host, port, authKeysPath: values.authKeys, insecureNoAuth: values.insecureNoAuth, logLevel: values.logLevel as LogLevelName };
}

/** Validates the shared flags and the blob storage flags; throws UsageError naming the flag. */
export function compileServiceConfig(values: ServiceFlagValues): ServiceConfig {
  const server = compileServerConfig(values);
  if (!/^(file|s3):\/\//.test(values.storage)) {
    throw new UsageError(`--storage must be a file:// or s3:// URL, got "${values.storage}"`);
  }
  return {
    ...server,
    storageUrl: values.storage,
    storageDir: localDirOf(values.storage),
    s3ConditionalWrites: parseS3ConditionalWrites(values.s3ConditionalWrites),
  };
}

/** Validates --s3-conditional-writes; throws UsageError naming the flag. */
export function parseS3ConditionalWrites(text: string): S3ConditionalWrites {
  const mode = s3ConditionalWritesModes.find((candidate) => candidate === text);
  if (mode === undefined) {
    throw new UsageError(`--s3-conditional-writes must be one of ${s3ConditionalWritesModes.join(", ")}, got "${text}"`);
  }
  return mode;
}

/** Parses HOST:PORT or [IPv6]:PORT. */
export function parseListen(text: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(text);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) {
    throw new UsageError(`--listen must be HOST:PORT with a port in 0..65535, got "${text}"`);
  }
  return { host: match[1] ?? (match[2] || "127.0.0.1"), port };
}

/** The directory of a file:// URL; undefined for another scheme or a URL openBlobStore will refuse. */
function localDirOf(url: string): string | undefined {
  if (!url.startsWith("file://")) return undefined;
  try {
    return fileURLToPath(url);
  } catch {
    return undefined;
  }
}
