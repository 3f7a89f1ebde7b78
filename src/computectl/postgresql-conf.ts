import type { ComputeSpec } from "./compute-spec.js";

/** What pgmesh itself sets, after the spec's settings (so it wins). */
export interface PgmeshSettings {
  readonly port: number;
  readonly listenAddresses: string;
  readonly socketDir: string;
  /** Libraries to preload before the spec's own (the compute hook first). */
  readonly preloadLibraries: readonly string[];
  /** Further settings, e.g. the compute hook's GUCs. */
  readonly extra: Readonly<Record<string, string>>;
}

const managedBegin = "# ---- settings from the compute spec (managed by compute-ctl) ----";
const pgmeshBegin = "# ---- pgmesh settings (managed by compute-ctl) ----";

/**
 * postgresql.conf for one start: the spec's postgresql_conf (or the base
 * data's file when the spec has none), then the spec's settings in a managed
 * block, then what pgmesh needs. Postgres takes the last value of a setting,
 * so pgmesh's port, sockets and preload list win.
 */
export function renderPostgresqlConf(baseConf: string, spec: ComputeSpec, pgmesh: PgmeshSettings): string {
  const first = spec.postgresqlConf ?? baseConf;
  const lines = [first.trimEnd(), "", managedBegin];
  for (const { name, value } of spec.settings) lines.push(`${name} = ${quote(value)}`);
  lines.push("", pgmeshBegin);
  const settings: Record<string, string> = {
    port: String(pgmesh.port),
    listen_addresses: pgmesh.listenAddresses,
    unix_socket_directories: pgmesh.socketDir,
    shared_preload_libraries: sharedPreloadLibraries(spec, pgmesh.preloadLibraries).join(","),
    "pg_stat_statements.save": "on",
    ...pgmesh.extra,
  };
  for (const [name, value] of Object.entries(settings)) lines.push(`${name} = ${quote(value)}`);
  return `${lines.join("\n")}\n`;
}

/** pgmesh's libraries first, then the spec's shared_preload_libraries, then pg_stat_statements; no repeats. */
export function sharedPreloadLibraries(spec: ComputeSpec, pgmeshLibraries: readonly string[]): string[] {
  const fromSpec = spec.settings
    .filter((s) => s.name === "shared_preload_libraries")
    .flatMap((s) => s.value.split(","))
    .map((l) => l.trim().replace(/^"|"$/g, ""))
    .filter((l) => l !== "");
  return [...new Set([...pgmeshLibraries, ...fromSpec, "pg_stat_statements"])];
}

/** Whether two specs differ in what postgresql.conf holds. */
export function confChanged(before: ComputeSpec, after: ComputeSpec): boolean {
  return before.postgresqlConf !== after.postgresqlConf || JSON.stringify(before.settings) !== JSON.stringify(after.settings);
}

/** Names of settings whose value the new spec adds, changes or removes. */
export function changedSettingNames(before: ComputeSpec, after: ComputeSpec): string[] {
  const old = new Map(before.settings.map((s) => [s.name, s.value]));
  const now = new Map(after.settings.map((s) => [s.name, s.value]));
  return [...new Set([...old.keys(), ...now.keys()])].filter((name) => old.get(name) !== now.get(name));
}

/** A postgresql.conf string literal: quotes and backslashes doubled. */
function quote(value: string): string {
  return `'${value.replace(/\\/g, "\\\\").replace(/'/g, "''")}'`;
}
