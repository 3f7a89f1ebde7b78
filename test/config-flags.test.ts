import { describe, expect, it } from "vitest";
import {
  compileServiceConfig,
  defineFlags,
  parseCommandLine,
  parseDurationSec,
  parseFlags,
  parseListen,
  serviceFlags,
  UsageError,
  type FlagSpecs,
  type ParsedFlags,
} from "../src/config/index.js";
import { runCommand } from "./helpers/run-command.js";

const flags = defineFlags({
  pgdata: { type: "string", short: "D", valueName: "DIR", help: "Data directory" },
  "max-file-bytes": { type: "number", default: 100, help: "Largest file" },
  verbose: { type: "boolean", help: "Say more" },
  "allow-path": { type: "list", default: ["a"], help: "Allowed paths" },
});

/** Runs parseCommandLine as a binary would. */
function run<S extends FlagSpecs>(specs: S, argv: string[], validate?: (parsed: ParsedFlags<S>) => unknown) {
  const program = { name: "prog", description: "Does things." };
  return runCommand((io) => parseCommandLine(program, specs, { io, ...(validate ? { validate } : {}) }), argv);
}

describe("flag parsing", () => {
  it("reads long flags, short aliases and --flag=value, camelCasing the names", () => {
    const { values } = parseFlags(flags, ["-D", "/data", "--max-file-bytes=42", "--verbose", "--allow-path", "x,y", "--allow-path", "z"], {});
    expect(values).toEqual({ pgdata: "/data", maxFileBytes: 42, verbose: true, allowPath: ["x", "y", "z"] });
  });

  it("falls back to defaults", () => {
    expect(parseFlags(flags, [], {}).values).toEqual({ pgdata: undefined, maxFileBytes: 100, verbose: false, allowPath: ["a"] });
  });

  it("reads PGMESH_<FLAG> environment variables", () => {
    const env = { PGMESH_PGDATA: "/env", PGMESH_MAX_FILE_BYTES: "7", PGMESH_VERBOSE: "yes", PGMESH_ALLOW_PATH: "p,q" };
    expect(parseFlags(flags, [], env).values).toEqual({ pgdata: "/env", maxFileBytes: 7, verbose: true, allowPath: ["p", "q"] });
  });

  it("lets a flag win over its environment variable", () => {
    expect(parseFlags(flags, ["-D", "/flag"], { PGMESH_PGDATA: "/env" }).values.pgdata).toBe("/flag");
  });

  it("refuses an unknown flag", () => {
    expect(() => parseFlags(flags, ["--nope"], {})).toThrow(UsageError);
    expect(() => parseFlags(flags, ["--nope"], {})).toThrow("Unknown option '--nope'");
  });

  it("refuses a number flag that is not a number, naming the flag", () => {
    expect(() => parseFlags(flags, ["--max-file-bytes", "lots"], {})).toThrow('--max-file-bytes must be a number, got "lots"');
  });

  it("refuses a bad value in an environment variable, naming the variable", () => {
    expect(() => parseFlags(flags, [], { PGMESH_VERBOSE: "maybe" })).toThrow(
      'PGMESH_VERBOSE must be true or false (1/0, yes/no), got "maybe"',
    );
  });

  it("refuses a string flag without a value", () => {
    expect(() => parseFlags(flags, ["--pgdata"], {})).toThrow(UsageError);
  });

  it("refuses positional arguments unless allowed", () => {
    expect(() => parseFlags(flags, ["stray"], {})).toThrow(UsageError);
    expect(parseFlags(flags, ["mint"], {}, { allowPositionals: true }).positionals).toEqual(["mint"]);
  });
});

describe("command line", () => {
  it("prints usage with env vars and defaults for --help and exits 0", async () => {
    const { stdout, code } = await run(flags, ["--help"]);
    expect(code).toBe(0);
    expect(stdout).toContain("Usage: prog [flags]");
    expect(stdout).toContain("Does things.");
    expect(stdout).toMatch(/-D, --pgdata DIR\s+Data directory \(env PGMESH_PGDATA\)/);
    expect(stdout).toMatch(/--max-file-bytes N\s+Largest file \(env PGMESH_MAX_FILE_BYTES; default 100\)/);
  });

  it("prints the error and exits 2 on a bad flag", async () => {
    const { stderr, code } = await run(flags, ["--max-file-bytes", "x"]);
    expect(code).toBe(2);
    expect(stderr).toBe('prog: --max-file-bytes must be a number, got "x"\nRun \'prog --help\' for usage.\n');
  });

  it("exits 2 on a UsageError from validation", async () => {
    const { stderr, code } = await run(serviceFlags("epufs"), [], ({ values }) => compileServiceConfig(values));
    expect(code).toBe(2);
    expect(stderr).toContain("give --auth-keys FILE");
  });
});

describe("service flags", () => {
  it("defaults --listen to the service's own port and --storage under ./.pgmesh", () => {
    const { values } = parseFlags(serviceFlags("compute-ctl", "/srv"), ["--insecure-no-auth"], {});
    expect(compileServiceConfig(values)).toEqual({
      host: "127.0.0.1",
      port: 7103,
      storageUrl: "file:///srv/.pgmesh/compute-ctl",
      storageDir: "/srv/.pgmesh/compute-ctl",
      authKeysPath: undefined,
      insecureNoAuth: true,
      logLevel: "info",
      s3ConditionalWrites: "auto",
    });
  });

  it("has the DESIGN.md default port for each service", () => {
    const ports = (["extension-store", "epufs", "compute-ctl", "walredo"] as const).map(
      (s) => parseFlags(serviceFlags(s), [], {}).values.listen,
    );
    expect(ports).toEqual(["127.0.0.1:7101", "127.0.0.1:7102", "127.0.0.1:7103", "127.0.0.1:7104"]);
  });

  it("reads the shared flags from PGMESH_* variables", () => {
    const env = { PGMESH_LISTEN: "0.0.0.0:9000", PGMESH_AUTH_KEYS: "/k.jwks", PGMESH_STORAGE: "s3://b/p", PGMESH_LOG_LEVEL: "debug" };
    expect(compileServiceConfig(parseFlags(serviceFlags("epufs"), [], env).values)).toMatchObject({
      host: "0.0.0.0",
      port: 9000,
      authKeysPath: "/k.jwks",
      storageUrl: "s3://b/p",
      logLevel: "debug",
    });
  });

  it("needs exactly one of --auth-keys and --insecure-no-auth", () => {
    const both = parseFlags(serviceFlags("epufs"), ["--auth-keys", "k", "--insecure-no-auth"], {}).values;
    expect(() => compileServiceConfig(both)).toThrow("--auth-keys and --insecure-no-auth exclude each other");
  });

  it("refuses an unknown log level and a storage URL of another scheme", () => {
    const base = ["--insecure-no-auth"];
    expect(() => compileServiceConfig(parseFlags(serviceFlags("epufs"), [...base, "--log-level", "loud"], {}).values)).toThrow(
      '--log-level must be one of fatal, error, warn, info, debug, trace, silent, got "loud"',
    );
    expect(() => compileServiceConfig(parseFlags(serviceFlags("epufs"), [...base, "--storage", "/tmp/x"], {}).values)).toThrow(
      '--storage must be a file:// or s3:// URL, got "/tmp/x"',
    );
  });

  it("refuses an --s3-conditional-writes other than auto, on or off", () => {
    const values = parseFlags(serviceFlags("epufs"), ["--insecure-no-auth", "--s3-conditional-writes", "yes"], {}).values;
    expect(() => compileServiceConfig(values)).toThrow('--s3-conditional-writes must be one of auto, on, off, got "yes"');
  });

  it("parses HOST:PORT, [IPv6]:PORT and :PORT", () => {
    expect(parseListen("10.0.0.1:80")).toEqual({ host: "10.0.0.1", port: 80 });
    expect(parseListen("[::1]:7101")).toEqual({ host: "::1", port: 7101 });
    expect(parseListen(":0")).toEqual({ host: "127.0.0.1", port: 0 });
    expect(() => parseListen("localhost")).toThrow('--listen must be HOST:PORT with a port in 0..65535, got "localhost"');
    expect(() => parseListen("h:70000")).toThrow(UsageError);
  });
});

describe("durations", () => {
  it("parses seconds, minutes, hours and days", () => {
    expect([parseDurationSec("90", "--ttl"), parseDurationSec("90s", "--ttl"), parseDurationSec("15m", "--ttl")]).toEqual([90, 90, 900]);
    expect([parseDurationSec("1h", "--ttl"), parseDurationSec("7d", "--ttl")]).toEqual([3600, 604800]);
  });

  it("refuses anything else, naming the flag", () => {
    expect(() => parseDurationSec("1 week", "--ttl")).toThrow('--ttl must be a duration like 90s, 15m, 1h or 7d, got "1 week"');
  });
});
