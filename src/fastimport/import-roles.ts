import { dumpRoles, type ToolContext } from "./dump-restore.js";
import { FastImportError } from "./fast-import-errors.js";
import type { ImportReporter } from "./import-reporter.js";
import { quoteIdent, setClause, type LocalCluster } from "./local-cluster.js";
import { buildRoleScript } from "./role-script.js";
import type { SourceCatalog } from "./source-catalog.js";
import type { SourceConnection } from "./source-connection.js";

/**
 * pg_dumpall --roles-only, rewritten for a compute (see role-script.ts), plus
 * the imported roles' settings in imported databases, applied locally;
 * returns the roles created.
 */
export async function importRoles(
  tools: ToolContext,
  source: SourceConnection,
  catalog: SourceCatalog,
  local: LocalCluster,
  superuser: string,
  reporter: ImportReporter,
): Promise<readonly string[]> {
  if (catalog.roles?.length === 0) return [];
  const dump = await dumpRoles(tools, source, catalog.databases[0]!.name, (m) => reporter.warn(m));
  const script = buildRoleScript(dump, { roles: catalog.roles === undefined ? "all" : new Set(catalog.roles), superuser });
  const missing = (catalog.roles ?? []).filter((name) => !script.roles.includes(name));
  if (missing.length > 0) {
    throw new FastImportError("roles", `role(s) ${missing.map((m) => JSON.stringify(m)).join(", ")} do not exist on the source; check --roles`);
  }
  const imported = new Set(script.roles);
  const databases = new Set(catalog.databases.map((db) => db.name));
  const inDatabase = catalog.roleSettings
    .filter((entry) => imported.has(entry.role) && databases.has(entry.database))
    .flatMap((entry) => entry.settings.map((setting) => `alter role ${quoteIdent(entry.role)} in database ${quoteIdent(entry.database)} set ${setClause(setting)}`));
  await local.applyRoles([...script.statements, ...inDatabase]);
  if (script.skipped.length > 0) reporter.warn("left out role statements fast-import does not carry over", { statements: script.skipped });
  if (script.demoted.length > 0) reporter.warn("roles imported without SUPERUSER, REPLICATION or BYPASSRLS, which a compute's users cannot hold", { roles: script.demoted });
  return script.roles;
}
