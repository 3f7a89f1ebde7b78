import { execFile } from "node:child_process";
import { open } from "node:fs/promises";
import { promisify } from "node:util";
import { BundleBuildError } from "./bundle-errors.js";

const execFileAsync = promisify(execFile);

export interface SharedLibraryClosure {
  /** Absolute host paths of every shared library the programs load, as the loader resolves them. */
  readonly libraries: readonly string[];
  /** The dynamic loader (PT_INTERP), e.g. /lib64/ld-linux-x86-64.so.2. */
  readonly interpreter: string;
}

const ELF_MAGIC = Buffer.from([0x7f, 0x45, 0x4c, 0x46]);

export async function isElf(file: string): Promise<boolean> {
  const handle = await open(file, "r");
  try {
    const head = Buffer.alloc(4);
    const { bytesRead } = await handle.read(head, 0, 4, 0);
    return bytesRead === 4 && head.equals(ELF_MAGIC);
  } finally {
    await handle.close();
  }
}

/** ldd's view of one file: dependency paths, and the loader line. */
async function ldd(file: string): Promise<{ libraries: string[]; interpreter?: string }> {
  let stdout: string;
  try {
    ({ stdout } = await execFileAsync("ldd", [file]));
  } catch (error) {
    const out = String((error as { stdout?: string }).stdout ?? "");
    if (/not a dynamic executable|statically linked/.test(out + String((error as { stderr?: string }).stderr ?? ""))) {
      return { libraries: [] };
    }
    throw new BundleBuildError(`ldd ${file} failed: ${(error as Error).message}`, { cause: error });
  }
  const libraries: string[] = [];
  let interpreter: string | undefined;
  for (const raw of stdout.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("linux-vdso") || line === "statically linked") continue;
    const arrow = /^(\S+) => (.+?) \(0x[0-9a-f]+\)$/.exec(line);
    if (arrow) {
      if (arrow[2] === "not found") throw new BundleBuildError(`${file} needs ${arrow[1]}, which is not installed`);
      libraries.push(arrow[2]!);
      continue;
    }
    if (/^\S+ => not found$/.test(line)) throw new BundleBuildError(`${file} needs ${line.split(" ")[0]}, which is not installed`);
    const loader = /^(\/\S+) \(0x[0-9a-f]+\)$/.exec(line);
    if (loader) interpreter = loader[1];
  }
  return { libraries, interpreter };
}

/** Every shared library the given ELF files load (ldd resolves the transitive closure). */
export async function sharedLibraryClosure(files: readonly string[]): Promise<SharedLibraryClosure> {
  const libraries = new Set<string>();
  let interpreter: string | undefined;
  for (const file of files) {
    const deps = await ldd(file);
    deps.libraries.forEach((lib) => libraries.add(lib));
    interpreter ??= deps.interpreter;
  }
  if (interpreter === undefined) throw new BundleBuildError("no dynamically linked program found: cannot tell the dynamic loader");
  libraries.delete(interpreter);
  return { libraries: [...libraries].sort(), interpreter };
}
