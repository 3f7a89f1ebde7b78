/**
 * The PGDATA files an endpoint may store by default: the state Postgres and
 * its extensions write at shutdown and read back at start-up.
 * - pg_stat/pgstat.stat: cumulative statistics (PostgreSQL 15+)
 * - pg_stat/global.stat, pg_stat/db_*.stat: the stats collector's files (14 and older)
 * - pg_stat/pg_stat_statements.stat: pg_stat_statements
 * - autoprewarm.blocks: pg_prewarm's autoprewarm worker
 * - lfc_state: the local file cache prewarm state Neon's computes keep in endpoint storage
 */
export const defaultAllowedPaths: readonly string[] = [
  "pg_stat/pgstat.stat",
  "pg_stat/global.stat",
  "pg_stat/db_*.stat",
  "pg_stat/pg_stat_statements.stat",
  "autoprewarm.blocks",
  "lfc_state",
];

/** A compiled allow-list: exact paths, where "*" matches any run of characters within one segment. */
export interface AllowedPaths {
  readonly patterns: readonly string[];
  allows(path: string): boolean;
}

export function compileAllowedPaths(patterns: readonly string[]): AllowedPaths {
  const regexps = patterns.map(
    (pattern) => new RegExp(`^${pattern.split("*").map(escapeRegExp).join("[^/]*")}$`),
  );
  return {
    patterns,
    allows: (path) => regexps.some((regexp) => regexp.test(path)),
  };
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
