import { parseArgs } from "node:util";
import { UsageError } from "./usage-error.js";

export type FlagType = "string" | "number" | "boolean" | "list";

type ValueOf<T extends FlagType> = T extends "string"
  ? string
  : T extends "number"
    ? number
    : T extends "boolean"
      ? boolean
      : string[];

/** One flag of a binary; its name is the key in the FlagSpecs record (kebab-case, e.g. "auth-keys"). */
export interface FlagSpec<T extends FlagType = FlagType> {
  readonly type: T;
  /** One-letter alias, e.g. "D" for -D. */
  readonly short?: string;
  /** Value when neither flag nor env var is given; booleans default to false and lists to []. */
  readonly default?: ValueOf<T>;
  /** Placeholder in --help, e.g. "HOST:PORT". */
  readonly valueName?: string;
  readonly help: string;
}

export type FlagSpecs = Record<string, FlagSpec>;

type CamelCase<S extends string> = S extends `${infer H}-${infer T}` ? `${H}${Capitalize<CamelCase<T>>}` : S;

/** Parsed values, keyed by camelCase flag name; undefined only for string/number flags without a default. */
export type FlagValues<S extends FlagSpecs> = {
  -readonly [K in keyof S & string as CamelCase<K>]: S[K] extends FlagSpec<infer T>
    ? T extends "boolean" | "list"
      ? ValueOf<T>
      : S[K] extends { default: unknown }
        ? ValueOf<T>
        : ValueOf<T> | undefined
    : never;
};

export interface ParsedFlags<S extends FlagSpecs> {
  readonly values: FlagValues<S>;
  readonly positionals: string[];
  /** True when --help or -h was given. */
  readonly help: boolean;
}

/** The environment variable that sets `flag`: PGMESH_ then the name in upper snake case. */
export function envVarOf(flag: string): string {
  return "PGMESH_" + flag.toUpperCase().replace(/-/g, "_");
}

function camelCase(flag: string): string {
  return flag.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/**
 * Parses argv (without node and script) against the specs: a flag wins over
 * its PGMESH_* environment variable, which wins over the default. Throws
 * UsageError on an unknown flag or a bad value.
 */
export function parseFlags<S extends FlagSpecs>(
  specs: S,
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  options: { readonly allowPositionals?: boolean } = {},
): ParsedFlags<S> {
  const parseOptions: Record<string, { type: "string" | "boolean"; short?: string; multiple?: boolean }> = {
    help: { type: "boolean", short: "h" },
  };
  for (const [name, spec] of Object.entries(specs)) {
    parseOptions[name] = {
      type: spec.type === "boolean" ? "boolean" : "string",
      ...(spec.short !== undefined ? { short: spec.short } : {}),
      ...(spec.type === "list" ? { multiple: true } : {}),
    };
  }
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      options: parseOptions,
      strict: true,
      allowPositionals: options.allowPositionals ?? false,
    });
  } catch (err) {
    throw new UsageError((err as Error).message.replace(/\. To specify a positional argument.*$/, ""));
  }
  const values: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(specs)) {
    const given = (parsed.values as Record<string, string | boolean | string[] | undefined>)[name];
    const envName = envVarOf(name);
    const envValue = env[envName];
    let value: unknown;
    if (given !== undefined) {
      value = convert(spec, given, `--${name}`);
    } else if (envValue !== undefined && envValue !== "") {
      value = convertText(spec, envValue, envName);
    } else {
      value = spec.default ?? (spec.type === "boolean" ? false : spec.type === "list" ? [] : undefined);
    }
    values[camelCase(name)] = value;
  }
  return { values: values as FlagValues<S>, positionals: parsed.positionals, help: parsed.values["help"] === true };
}

function convert(spec: FlagSpec, given: string | boolean | string[], source: string): unknown {
  if (typeof given === "boolean") return given;
  if (Array.isArray(given)) return given.flatMap((v) => splitList(v));
  return convertText(spec, given, source);
}

function convertText(spec: FlagSpec, text: string, source: string): unknown {
  switch (spec.type) {
    case "string":
      return text;
    case "list":
      return splitList(text);
    case "number": {
      const n = Number(text);
      if (text.trim() === "" || !Number.isFinite(n)) throw new UsageError(`${source} must be a number, got "${text}"`);
      return n;
    }
    case "boolean": {
      const t = text.toLowerCase();
      if (["1", "true", "yes", "on"].includes(t)) return true;
      if (["0", "false", "no", "off"].includes(t)) return false;
      throw new UsageError(`${source} must be true or false (1/0, yes/no), got "${text}"`);
    }
  }
}

function splitList(text: string): string[] {
  return text
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
}

/** The --help text: usage line, description, then every flag with its env var and default. */
export function formatUsage(program: { readonly name: string; readonly usage?: string; readonly description: string }, specs: FlagSpecs): string {
  const lines = [`Usage: ${program.name} ${program.usage ?? "[flags]"}`, "", program.description, "", "Flags:"];
  const entries = Object.entries(specs).map(([name, spec]) => {
    const placeholder = spec.type === "boolean" ? "" : ` ${spec.valueName ?? (spec.type === "number" ? "N" : spec.type === "list" ? "A,B" : "VALUE")}`;
    const head = `${spec.short !== undefined ? `-${spec.short}, ` : "    "}--${name}${placeholder}`;
    const notes = [`env ${envVarOf(name)}`];
    if (spec.default !== undefined && !(Array.isArray(spec.default) && spec.default.length === 0)) {
      notes.push(`default ${Array.isArray(spec.default) ? spec.default.join(",") : String(spec.default)}`);
    }
    return { head, text: `${spec.help} (${notes.join("; ")})` };
  });
  entries.push({ head: "-h, --help", text: "Print this help and exit" });
  const width = Math.max(...entries.map((e) => e.head.length)) + 2;
  for (const { head, text } of entries) lines.push(`  ${head.padEnd(width)}${text}`);
  return lines.join("\n") + "\n";
}
