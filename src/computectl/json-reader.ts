import { SpecError } from "./spec-error.js";

/**
 * Reads typed values out of parsed JSON, naming the JSON path of whatever is
 * wrong (`cluster.roles[2].name: must be a non-empty string`). Unknown fields
 * are never looked at, so they are ignored.
 */
export class JsonReader {
  constructor(
    readonly value: unknown,
    readonly path: string,
  ) {}

  fail(problem: string): never {
    throw new SpecError(this.path, problem);
  }

  get isAbsent(): boolean {
    return this.value === undefined || this.value === null;
  }

  /** The member `name` of this object (absent members read as undefined). */
  field(name: string): JsonReader {
    const object = this.object();
    return new JsonReader(object[name], this.path ? `${this.path}.${name}` : name);
  }

  object(): Record<string, unknown> {
    if (typeof this.value !== "object" || this.value === null || Array.isArray(this.value)) {
      this.fail(`must be an object, got ${describe(this.value)}`);
    }
    return this.value as Record<string, unknown>;
  }

  /** The elements of an array; null or absent reads as an empty array. */
  items(): JsonReader[] {
    if (this.isAbsent) return [];
    if (!Array.isArray(this.value)) this.fail(`must be an array or null, got ${describe(this.value)}`);
    return this.value.map((v, i) => new JsonReader(v, `${this.path}[${i}]`));
  }

  /** The members of an object as [key, reader] pairs; null or absent reads as none. */
  entries(): [string, JsonReader][] {
    if (this.isAbsent) return [];
    return Object.keys(this.object()).map((k) => [k, this.field(k)]);
  }

  string(): string {
    if (typeof this.value !== "string") this.fail(`must be a string, got ${describe(this.value)}`);
    return this.value;
  }

  nonEmptyString(): string {
    if (typeof this.value !== "string" || this.value === "") this.fail(`must be a non-empty string, got ${describe(this.value)}`);
    return this.value;
  }

  optionalString(): string | undefined {
    return this.isAbsent ? undefined : this.string();
  }

  optionalNonEmptyString(): string | undefined {
    return this.isAbsent ? undefined : this.nonEmptyString();
  }

  boolean(fallback: boolean): boolean {
    if (this.isAbsent) return fallback;
    if (typeof this.value !== "boolean") this.fail(`must be true or false, got ${describe(this.value)}`);
    return this.value;
  }

  number(): number {
    if (typeof this.value !== "number" || !Number.isFinite(this.value)) this.fail(`must be a number, got ${describe(this.value)}`);
    return this.value;
  }
}

function describe(value: unknown): string {
  if (value === undefined) return "nothing";
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "string") return value === "" ? "an empty string" : `the string ${JSON.stringify(value.slice(0, 40))}`;
  if (typeof value === "object") return "an object";
  return `${typeof value} ${String(value)}`;
}
