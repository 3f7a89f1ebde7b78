import type { SettingSpec } from "./compute-spec.js";

/*
 * Settings a Neon control plane sends that vanilla Postgres does not know or
 * cannot honour: `neon.*` GUCs (Neon's extension), the `neon*` preload
 * libraries, `synchronous_standby_names = 'walproposer'` (safekeepers stand in
 * for a standby), and `autoprewarm` / `offload_lfc_interval_seconds` (compute
 * options Neon's own test spec lists among the settings). Postgres refuses to
 * start on an unknown name without a dot, and would wait forever for a
 * 'walproposer' standby, so these are dropped, each with a warning.
 */
const neonComputeOptions = new Set(["autoprewarm", "offload_lfc_interval_seconds"]);

export function dropNeonOnlySettings(settings: readonly SettingSpec[]): { kept: SettingSpec[]; warnings: string[] } {
  const kept: SettingSpec[] = [];
  const warnings: string[] = [];
  const drop = (what: string, why: string) => warnings.push(`dropped ${what}: ${why}`);
  for (const setting of settings) {
    const { name, value } = setting;
    const lower = name.toLowerCase();
    if (lower.startsWith("neon.")) {
      drop(`setting ${name}`, "it belongs to Neon's Postgres extension, which pgmesh does not run");
    } else if (neonComputeOptions.has(lower)) {
      drop(`setting ${name}`, "it is a Neon compute option, not a Postgres setting");
    } else if (lower === "synchronous_standby_names" && value.trim().replace(/^'|'$/g, "") === "walproposer") {
      drop(`setting ${name} = '${value}'`, "pgmesh has no safekeepers; durability comes from the blob store");
    } else if (lower === "shared_preload_libraries") {
      const libraries = value.split(",").map((l) => l.trim()).filter((l) => l !== "");
      const neon = libraries.filter((l) => /^"?neon(_\w+)?"?$/.test(l));
      if (neon.length > 0) drop(`${neon.join(", ")} from ${name}`, "Neon's libraries need Neon's Postgres fork");
      const rest = libraries.filter((l) => !neon.includes(l));
      if (rest.length > 0) kept.push(neon.length > 0 ? { name, value: rest.join(",") } : setting);
    } else {
      kept.push(setting);
    }
  }
  return { kept, warnings };
}
