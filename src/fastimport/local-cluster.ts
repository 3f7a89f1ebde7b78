import pg from "pg";
import { freePort } from "../net/free-port.js";
import { initdb, pgProgram, startPostgres, type OsUser, type PgBinaries, type RunningPostgres } from "../pg/index.js";
import { bulkLoadSettings } from "./bulk-load-settings.js";
import { diskFullLine } from "./disk-full-line.js";
import { DiskFullError, FastImportError, UncleanShutdownError, type ImportPhase } from "./fast-import-errors.js";
import { runPgTool } from "./run-pg-tool.js";
import { parseControlData, type ControlData } from "./snapshot-files.js";
import type { SourceDatabase } from "./source-catalog.js";
import type { WorkdirLayout } from "./workdir.js";

export interface LocalClusterOptions {
  readonly binaries: PgBinaries;
  readonly user: OsUser;
  readonly layout: WorkdirLayout;
  readonly superuser: string;
  readonly memoryMb: number;
  readonly jobs: number;
}

/**
 * The Postgres that fast-import loads into: initdb'd into the working
 * directory as the unprivileged user, run with bulk-load settings, stopped
 * with a fast shutdown (which writes a shutdown checkpoint).
 */
export class LocalCluster {
  private postgres: RunningPostgres | undefined;

  constructor(private readonly options: LocalClusterOptions) {}

  async initdb(): Promise<void> {
    const { binaries, user, layout, superuser } = this.options;
    await initdb({ binaries, user, dataDir: layout.pgdata, superuser, extraArgs: ["--no-sync"] }).catch((error: unknown) => {
      throw this.diskFullOr("initdb", error);
    });
  }

  async start(): Promise<void> {
    const { binaries, user, layout, memoryMb, jobs } = this.options;
    this.postgres = await startPostgres({
      binaries,
      user,
      dataDir: layout.pgdata,
      port: await freePort(),
      socketDir: layout.socketDir,
      logFile: layout.postgresLog,
      settings: bulkLoadSettings(memoryMb, jobs),
    });
  }

  /** libpq URI of a local database (loopback TCP, trust auth). */
  uri(database: string): string {
    return this.running().connectionUri(database, this.options.superuser);
  }

  /**
   * Creates the databases (except "postgres", which initdb made) with the
   * source's encoding and locale, and their ALTER DATABASE … SET settings.
   */
  async createDatabases(databases: readonly SourceDatabase[]): Promise<void> {
    await this.withClient("postgres", async (client) => {
      for (const db of databases) {
        if (db.name !== "postgres") {
          await client.query(
            `create database ${quoteIdent(db.name)} template template0 encoding ${quoteLiteral(db.encoding)} lc_collate ${quoteLiteral(db.collate)} lc_ctype ${quoteLiteral(db.ctype)}`,
          );
        }
        for (const setting of db.settings) await client.query(`alter database ${quoteIdent(db.name)} set ${setClause(setting)}`);
      }
    });
  }

  /** Runs the role statements in one transaction. */
  async applyRoles(statements: readonly string[]): Promise<void> {
    await this.withClient("postgres", async (client) => {
      await client.query("begin");
      for (const statement of statements) await client.query(statement);
      await client.query("commit");
    });
  }

  /**
   * VACUUM (FREEZE, ANALYZE) of every user table, `jobs` at a time, then a
   * database-wide VACUUM (FREEZE) for the catalogs (it skips the already
   * frozen pages). A compute then starts with hint bits set, the visibility
   * map filled (index-only scans work), planner statistics in place, and no
   * anti-wraparound vacuum due.
   */
  async vacuum(database: string, onTable: () => void): Promise<number> {
    const tables = await this.withClient(database, async (client) => {
      const result = await client.query<{ name: string }>(
        `select format('%I.%I', n.nspname, c.relname) as name from pg_class c join pg_namespace n on n.oid = c.relnamespace
          where c.relkind in ('r', 'm') and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname !~ '^pg_toast'
          order by pg_total_relation_size(c.oid) desc`,
      );
      return result.rows.map((row) => row.name);
    });
    let next = 0;
    const worker = () =>
      this.withClient(database, async (client) => {
        while (next < tables.length) {
          await client.query(`vacuum (freeze, analyze) ${tables[next++]!}`);
          onTable();
        }
      });
    await Promise.all(Array.from({ length: Math.min(this.options.jobs, tables.length) }, worker));
    await this.withClient(database, (client) => client.query("vacuum (freeze)"));
    return tables.length;
  }

  /** Fast shutdown (a shutdown checkpoint), then proof from pg_control that it was clean. */
  async stop(): Promise<ControlData> {
    const postgres = this.running();
    await postgres.stop("fast");
    const { code } = await postgres.exited;
    this.postgres = undefined;
    const control = parseControlData(
      await runPgTool({
        phase: "stop",
        program: pgProgram(this.options.binaries, "pg_controldata"),
        args: ["-D", this.options.layout.pgdata],
        target: this.options.layout.pgdata,
        env: { LC_ALL: "C", LANG: "C" },
        workdir: this.options.layout.root,
      }),
    );
    if (code !== 0 || control.state !== "shut down") throw new UncleanShutdownError(`${control.state}, exit code ${code}`);
    return control;
  }

  /** Stops a still running Postgres at once (after a failure). */
  async kill(): Promise<void> {
    await this.postgres?.stop("immediate");
    this.postgres = undefined;
  }

  /** The server log's last lines, for errors that may stem from the server. */
  async logTail(): Promise<string> {
    return (await this.postgres?.logTail(20)) ?? "";
  }

  private running(): RunningPostgres {
    if (this.postgres === undefined || this.postgres.hasExited) {
      throw new FastImportError("restore", "the local Postgres is not running");
    }
    return this.postgres;
  }

  private async withClient<T>(database: string, use: (client: pg.Client) => Promise<T>): Promise<T> {
    const client = new pg.Client({ connectionString: this.uri(database) });
    client.on("error", () => undefined);
    await client.connect();
    try {
      return await use(client);
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  private diskFullOr(phase: ImportPhase, error: unknown): unknown {
    const message = error instanceof Error ? error.message : String(error);
    const line = diskFullLine(message);
    return line ? new DiskFullError(phase, this.options.layout.root, line) : error;
  }
}

/** Settings whose stored value is already a quoted list (as pg_dumpall treats them). */
const listSettings = new Set(["search_path", "temp_tablespaces", "session_preload_libraries", "local_preload_libraries", "shared_preload_libraries", "unix_socket_directories"]);

/** "name=value" as stored in pg_db_role_setting → "name TO value" for ALTER … SET. */
export function setClause(setting: string): string {
  const at = setting.indexOf("=");
  const name = setting.slice(0, at);
  const value = setting.slice(at + 1);
  return `${quoteIdent(name)} to ${listSettings.has(name.toLowerCase()) ? value : quoteLiteral(value)}`;
}

export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

function quoteLiteral(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}
