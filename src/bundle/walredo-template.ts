import { chmod, chown, lstat, mkdir, readdir, rm } from "node:fs/promises";
import path from "node:path";
import { execa } from "execa";
import { chownTree, outputTail, runAsPrefix, type OsUser } from "../pg/index.js";
import { BundleBuildError } from "./bundle-errors.js";

/** Where the template cluster lives, relative to v<major>/ (the wrapper has the same path compiled in). */
export const WALREDO_TEMPLATE = "var/lib/pgmesh-walredo/template";

/**
 * The WAL position the template is moved to (pg_resetwal -l): every LSN a
 * walredo process replays must lie below it, so that flushing a page never
 * waits for WAL the scratch cluster does not have. Timeline 1, 1 MiB segments.
 */
export const TEMPLATE_WAL_FILE = "000000017FFFFFFF00000000";

/** Where TEMPLATE_WAL_FILE starts (log id 0x7FFFFFFF, segment 0): end LSNs of replayed records must lie below it. */
export const TEMPLATE_WAL_START_LSN = BigInt(`0x${TEMPLATE_WAL_FILE.slice(8, 16)}`) << 32n;

/** PG 15 gave template0 and postgres fixed OIDs; the walredo process only ever opens template1. */
const UNUSED_DATABASE_OIDS = ["4", "5"];

const CREATE_ENTRY_POINT =
  "CREATE FUNCTION pgmesh_walredo_main() RETURNS void AS '$libdir/pgmesh_walredo', 'pgmesh_walredo_main' LANGUAGE C\n";

export interface WalredoTemplateOptions {
  /** The bundle being built (holds `launcher` and v<major>/). */
  readonly bundleDir: string;
  readonly major: number;
  readonly user: OsUser;
}

async function runAs(user: OsUser, args: readonly string[], input?: string): Promise<{ stdout: string; stderr: string }> {
  const prefix = runAsPrefix(user);
  const result = await execa(prefix[0]!, [...prefix.slice(1), ...args], { input, reject: false, all: true });
  if (result.exitCode !== 0 || /\b(ERROR|FATAL|PANIC):/.test(result.stderr)) {
    throw new BundleBuildError(`walredo template: ${args.slice(1).join(" ")} failed (exit ${result.exitCode}):\n${outputTail(result.all, 15)}`);
  }
  return result;
}

/** Read-only for everybody but root: each walredo process copies it into its own scratch cluster. */
async function publish(dir: string): Promise<void> {
  const stat = await lstat(dir);
  await chown(dir, 0, 0);
  if (stat.isDirectory()) {
    await chmod(dir, 0o755);
    for (const entry of await readdir(dir)) await publish(path.join(dir, entry));
  } else if (stat.isFile()) {
    await chmod(dir, 0o644);
  }
}

/**
 * Builds v<major>/var/lib/pgmesh-walredo/template with the bundle's own
 * programs: initdb (1 MiB WAL segments), the SQL entry point of the walredo
 * module, the unused databases removed, WAL moved far ahead.
 */
export async function buildWalredoTemplate(options: WalredoTemplateOptions): Promise<void> {
  const launcher = path.join(options.bundleDir, "launcher");
  const major = String(options.major);
  const data = path.join(options.bundleDir, `v${major}`, WALREDO_TEMPLATE);
  const parent = path.dirname(data);
  await mkdir(parent, { recursive: true });
  await chownTree(parent, options.user);

  await runAs(options.user, [
    launcher, major, "initdb", "-D", data, "--no-sync", "--wal-segsize=1",
    "-U", options.user.name, "--locale=C", "--encoding=UTF8", "--auth=trust",
  ]);
  await runAs(options.user, [launcher, major, "postgres", "--single", "-D", data, "-F",
    "-c", "dynamic_shared_memory_type=mmap", "template1"], CREATE_ENTRY_POINT);
  if (options.major >= 15) {
    for (const oid of UNUSED_DATABASE_OIDS) await rm(path.join(data, "base", oid), { recursive: true, force: true });
  }
  await runAs(options.user, [launcher, major, "pg_resetwal", "-l", TEMPLATE_WAL_FILE, "-D", data]);
  for (const scratch of ["postmaster.opts", "pg_dynshmem"]) await rm(path.join(data, scratch), { recursive: true, force: true });
  await mkdir(path.join(data, "pg_dynshmem"));
  await publish(path.dirname(parent));
}
