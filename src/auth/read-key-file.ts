import { readFile } from "node:fs/promises";
import { KeyFileError } from "./auth-error.js";

/** Reads a key file as text; a missing or unreadable file is a KeyFileError naming it. */
export async function readKeyFile(path: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (err) {
    throw new KeyFileError(path, `cannot read: ${(err as Error).message}`);
  }
}
