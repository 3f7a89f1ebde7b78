/** The bundle the bundle and walredo-process tests share (built once; unchanged inputs keep it). */
import path from "node:path";
import { buildBundle } from "../src/bundle/index.js";

export const TEST_BUNDLE_DIR = path.resolve(import.meta.dirname, "../.pgmesh/test-bundle");

export async function ensureTestBundle(): Promise<string> {
  await buildBundle({ outDir: TEST_BUNDLE_DIR });
  return TEST_BUNDLE_DIR;
}
