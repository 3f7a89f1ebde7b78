import { formatUsage, parseFlags, type FlagSpecs, type ParsedFlags } from "./flags.js";
import { UsageError } from "./usage-error.js";

export interface Program {
  /** The binary's name, e.g. "epufs". */
  readonly name: string;
  /** What follows the name in the usage line (default "[flags]"). */
  readonly usage?: string;
  readonly description: string;
}

/** Where parseCommandLine writes and how it exits; process's by default, replaceable in tests. */
export interface CommandLineIo {
  readonly argv: readonly string[];
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  readonly exit: (code: number) => never;
}

const processIo: CommandLineIo = {
  argv: process.argv.slice(2),
  env: process.env,
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  exit: (code) => process.exit(code),
};

/** Identity, so a binary's flag table keeps its literal types: `defineFlags({ "pgdata": { type: "string", ... } })`. */
export function defineFlags<S extends FlagSpecs>(specs: S): S {
  return specs;
}

/**
 * For cmd/ files: parses flags and env; --help prints usage and exits 0; a
 * bad flag prints the error and exits 2. `validate` may throw UsageError for
 * checks across flags; its result is returned.
 */
export function parseCommandLine<S extends FlagSpecs, R = ParsedFlags<S>>(
  program: Program,
  specs: S,
  options: {
    readonly allowPositionals?: boolean;
    readonly validate?: (parsed: ParsedFlags<S>) => R;
    readonly io?: Partial<CommandLineIo>;
  } = {},
): R {
  const io: CommandLineIo = { ...processIo, ...options.io };
  try {
    const parsed = parseFlags(specs, io.argv, io.env, { allowPositionals: options.allowPositionals ?? false });
    if (parsed.help) {
      io.stdout(formatUsage(program, specs));
      return io.exit(0);
    }
    return options.validate ? options.validate(parsed) : (parsed as R);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    return exitWithUsageError(program, err, io);
  }
}

/** Prints `name: message` and a pointer to --help, then exits 2: for usage errors found after parsing. */
export function exitWithUsageError(program: Program, err: UsageError, io: Partial<CommandLineIo> = {}): never {
  const { stderr, exit } = { ...processIo, ...io };
  stderr(`${program.name}: ${err.message}\nRun '${program.name} --help' for usage.\n`);
  return exit(2);
}
