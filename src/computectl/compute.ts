import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "pino";
import pg from "pg";
import { freePort } from "../net/free-port.js";
import { resolveUnprivilegedUser, startPostgres, type OsUser, type RunningPostgres, type ShutdownMode } from "../pg/index.js";
import { formatLsn } from "../wal/index.js";
import { ActivityMonitor, computeCtlApplicationName } from "./activity-monitor.js";
import { layDownBaseData } from "./base-data.js";
import { installedExtensions, listDatabases, listRoles, statementInsights, type StatementInsight } from "./catalog-queries.js";
import type { CompiledComputeCtlOptions } from "./compute-ctl-options.js";
import type { ComputeExtensions } from "./compute-extensions.js";
import { adminRole, type BaseDataSource, type ComputeSpec } from "./compute-spec.js";
import { ComputeStateError, ComputeStateMachine, type ComputeStateName } from "./compute-state.js";
import { changedSettingNames, confChanged, renderPostgresqlConf, sharedPreloadLibraries } from "./postgresql-conf.js";
import { reconcileCatalog } from "./reconcile-catalog.js";
import { endpointStorageOf, fetchSavedFiles, placeSavedFiles, saveEndpointFiles } from "./saved-files.js";
import { SpecError } from "./spec-error.js";
import { emptyTimings, timed, type StartupTimings } from "./startup-timings.js";
import { ensureTimelineBranch } from "./timeline-branch.js";
import { hasTimelineCache, TimelinePrimary } from "./timeline-primary.js";
import { TimelineStandby } from "./timeline-standby.js";

/** What GetStatus reports. */
export interface ComputeStatusView {
  readonly state: ComputeStateName;
  readonly error: string;
  readonly changedAt: Date;
  readonly lastActive: Date | undefined;
  readonly tenantId: string;
  readonly timelineId: string;
  readonly endpointId: string;
  readonly connectionUri: string;
  readonly timings: StartupTimings;
}

export interface ComputeDeps {
  readonly logger: Logger;
  readonly extensions?: ComputeExtensions;
}

/**
 * Only the administrator connects without a password, and only from this host
 * (samehost: any of its addresses, so also a --pg-listen that is not loopback);
 * everybody else needs the spec's password.
 */
const pgHba = `# managed by compute-ctl
local all ${adminRole} trust
host  all ${adminRole} samehost trust
local all all md5
host  all all all md5
`;

/**
 * One Postgres compute, driven through Neon's compute_ctl states: every start
 * is fresh (PGDATA, saved files and extensions in parallel, then
 * postgresql.conf, Postgres, roles and databases); Terminate stops Postgres
 * and saves the endpoint's files to Epufs.
 */
export class Compute {
  readonly state = new ComputeStateMachine();
  readonly #createdAt = performance.now();
  #spec: ComputeSpec | undefined;
  #timings = emptyTimings();
  #user: OsUser | undefined;
  #port = 0;
  #socketDir: string | undefined;
  #baseConf = "";
  #computeCtlAddr = "";
  #postgres: RunningPostgres | undefined;
  #monitor: ActivityMonitor | undefined;
  #monitorStarting: Promise<void> | undefined;
  #starting: Promise<void> | undefined;
  /** PGDATA laid down from the initdb template while waiting for a spec (true when it succeeded). */
  #prelaid: Promise<boolean> | undefined;
  #stopping = false;
  readonly #startAbort = new AbortController();
  /** The timeline this compute writes, when its base data is a timeline. */
  #primary: TimelinePrimary | undefined;
  /** The timeline this compute reads, in Static or Replica mode. */
  #standby: TimelineStandby | undefined;
  #walLagging = false;
  /** New transactions are read-only while too much WAL waits for the store. */
  #writesPaused = false;

  constructor(
    readonly options: CompiledComputeCtlOptions,
    private readonly deps: ComputeDeps,
  ) {
    this.state.subscribe(({ state, error }) => deps.logger.info({ state, ...(error ? { error } : {}) }, "compute state changed"));
  }

  get spec(): ComputeSpec | undefined {
    return this.#spec;
  }

  get timings(): StartupTimings {
    return { ...this.#timings };
  }

  get lastActive(): Date | undefined {
    return this.#monitor?.lastActive;
  }

  /** The postmaster while one runs (tests and the main job use its pid). */
  get postgres(): RunningPostgres | undefined {
    return this.#postgres;
  }

  /** Starts with the options' spec, or waits in configuration_pending. `computeCtlAddr` is where the compute hook calls. */
  begin(computeCtlAddr: string): void {
    this.#computeCtlAddr = computeCtlAddr;
    if (this.options.spec) {
      this.#startWith(this.options.spec);
      return;
    }
    this.state.move("configuration_pending", "wait for a spec");
    // Most specs start from initdb: lay that PGDATA down while waiting, as a pooled compute would
    // (not where a timeline's PGDATA stays for a delta start).
    this.#prelaid = this.#prelayInitdb().catch(
      (err: unknown) => {
        this.deps.logger.warn({ err }, "could not lay down PGDATA ahead of the spec; the start will do it");
        return false;
      },
    );
  }

  status(): ComputeStatusView {
    const { state, error, changedAt } = this.state.current;
    const running = state === "running" || state === "configuration";
    return {
      state,
      error,
      changedAt,
      lastActive: this.lastActive,
      tenantId: this.#spec?.tenantId ?? "",
      timelineId: this.#spec?.timelineId ?? "",
      endpointId: this.#spec?.endpointId ?? "",
      connectionUri: running ? this.#adminUri("postgres", false) : "",
      timings: this.timings,
    };
  }

  /**
   * Starts a compute waiting for its spec (returns at once, in init), or
   * reconfigures a running one (returns once the difference is applied).
   */
  async configure(spec: ComputeSpec): Promise<ComputeStatusView> {
    switch (this.state.state) {
      case "empty":
      case "configuration_pending":
        this.#startWith(spec);
        return this.status();
      case "running":
        await this.#reconfigure(spec);
        return this.status();
      default:
        throw new ComputeStateError(this.state.state, "configuration", "configure");
    }
  }

  /**
   * Stops Postgres (fast or immediate), saves the endpoint's files, reports
   * terminated. On a timeline, a fast stop reports terminated only once the
   * WAL up to the shutdown checkpoint and a shutdown snapshot are durable.
   */
  async terminate(mode: Exclude<ShutdownMode, "smart"> = "fast"): Promise<ComputeStatusView> {
    this.state.move(mode === "fast" ? "termination_pending_fast" : "termination_pending_immediate", "terminate");
    await this.#primary?.stopShipping();
    await this.#stopPostgres(mode);
    if (this.#primary && mode === "fast") {
      try {
        const lsn = await this.#primary.finishCleanStop(AbortSignal.timeout(cleanStopTimeoutMs));
        this.deps.logger.info({ shutdownCheckpoint: formatLsn(lsn) }, "shutdown checkpoint and snapshot are durable");
      } catch (err) {
        this.state.fail(`could not make the shutdown durable in the timeline: ${messageOf(err)}`);
        await this.#cleanUp();
        return this.status();
      }
    }
    const storage = this.#spec && endpointStorageOf(this.#spec);
    if (storage) {
      try {
        const saved = await saveEndpointFiles(storage, this.options.pgdata, AbortSignal.timeout(this.options.savedFilesTimeoutMs));
        this.deps.logger.info({ files: saved }, "saved endpoint files to Epufs");
      } catch (err) {
        this.state.warn(`could not save endpoint files to Epufs at ${storage.addr}: ${messageOf(err)}`);
      }
    }
    this.state.move("terminated", "terminate");
    await this.#cleanUp();
    return this.status();
  }

  /**
   * What SIGTERM does: a running compute terminates fast (files saved); one
   * still starting is aborted; whatever Postgres runs is stopped.
   */
  async shutdown(): Promise<void> {
    const now = this.state.state;
    if (now === "configuration") await this.state.waitFor((s) => s.state !== "configuration");
    if (this.state.state === "running") {
      await this.terminate("fast");
      return;
    }
    if (now === "termination_pending_fast" || now === "termination_pending_immediate") {
      await this.state.waitFor((s) => s.state === "terminated" || s.state === "failed");
      return;
    }
    this.#startAbort.abort(new Error("compute-ctl is shutting down"));
    await this.#prelaid;
    await this.#starting;
    await this.#stopPostgres("immediate");
    await this.#cleanUp();
  }

  /**
   * Resolves once a compute waiting for its spec has laid down what it can
   * ahead of time (an initdb PGDATA), so a Configure now starts fastest.
   */
  async warmedUp(): Promise<void> {
    await this.#prelaid;
  }

  /** Waits until the compute runs; throws with the reason if it fails first. */
  async waitUntilRunning(signal?: AbortSignal): Promise<ComputeStatusView> {
    const s = await this.state.waitFor((x) => x.state === "running" || x.state === "failed" || x.state === "terminated", signal);
    if (s.state !== "running") throw new ConnectError(`the compute did not start: ${s.error || s.state}`, Code.FailedPrecondition);
    return this.status();
  }

  async insights(limit: number): Promise<StatementInsight[]> {
    return this.#query((client) => statementInsights(client, limit));
  }

  async databases(): Promise<{ name: string; owner: string }[]> {
    return this.#query(listDatabases);
  }

  async roles(): Promise<{ name: string; canLogin: boolean; superuser: boolean }[]> {
    return this.#query(listRoles);
  }

  async ensureExtension(name: string, isLibrary: boolean): Promise<{ extension: string; alreadyPresent: boolean }> {
    if (!this.deps.extensions) {
      throw new ConnectError("this compute-ctl was started without extension support", Code.FailedPrecondition);
    }
    if (!/^[A-Za-z0-9_.-]+$/.test(name)) {
      throw new ConnectError(`"${name}" is not an extension or library name`, Code.InvalidArgument);
    }
    return this.deps.extensions.ensure(name, isLibrary);
  }

  #startWith(spec: ComputeSpec): void {
    this.state.move("init", "start");
    // What the spec parse dropped so vanilla Postgres can run it stays visible in the status.
    for (const warning of spec.warnings) this.state.warn(warning);
    this.#spec = spec;
    this.#timings = emptyTimings();
    this.#timings.waitForSpecMs = Math.round(performance.now() - this.#createdAt);
    this.#starting = this.#start(spec).catch(async (err) => {
      this.deps.logger.error({ err }, "compute start failed");
      this.state.fail(messageOf(err));
      // A compute that failed to start serves nobody: stop a Postgres that did come up.
      await this.#stopPostgres("immediate");
    });
  }

  async #start(spec: ComputeSpec): Promise<void> {
    const started = performance.now();
    const t = this.#timings;
    const signal = this.#startAbort.signal;
    const { pgdata } = this.options;
    const user = await this.#osUser();
    this.#port = spec.port || this.options.pgPort || Number(this.options.connstr?.port || 0) || (await freePort());
    this.#socketDir ??= await socketDirFor(pgdata);

    // The parent must be traversable by the Postgres user; create it before anything makes it 0700.
    await mkdir(path.dirname(pgdata), { recursive: true, mode: 0o755 });
    const storage = endpointStorageOf(spec);
    const staging = `${pgdata}.saved-files`;
    const [base, saved, extensions] = await Promise.allSettled([
      timed(t, "baseDataMs", async () => {
        const prelaid = await this.#prelaid;
        this.#prelaid = undefined;
        if (spec.baseData.source === "timeline") {
          const ref = { tenantId: spec.tenantId!, timelineId: spec.timelineId! };
          const deps = { user, logger: this.deps.logger, signal };
          if (spec.baseData.ancestor) await ensureTimelineBranch(spec.baseData.storage, ref, spec.baseData.ancestor, this.options.blobStoreOptions, signal);
          if (spec.mode.kind === "primary") {
            this.#primary = await TimelinePrimary.start(spec.baseData.storage, ref, this.options, deps);
          } else {
            this.#standby = await TimelineStandby.start(spec.baseData.storage, ref, spec.mode, this.options, deps);
          }
        } else if (!(prelaid && spec.baseData.source === "initdb")) {
          await this.#layDown(spec.baseData, signal);
        }
      }),
      storage
        ? timed(t, "savedFilesMs", () => fetchSavedFiles(storage, staging, signal, this.options.savedFilesTimeoutMs))
        : Promise.resolve([]),
      this.deps.extensions
        ? timed(t, "extensionsMs", () => this.deps.extensions!.prepare(spec, this.#preloadLibraries(spec), signal))
        : Promise.resolve(),
    ]);
    if (base.status === "rejected") throw new Error(`could not lay down PGDATA (${spec.baseData.source}): ${messageOf(base.reason)}`);
    if (extensions.status === "rejected") throw new Error(`could not prepare extensions: ${messageOf(extensions.reason)}`);
    if (saved.status === "rejected") {
      await rm(staging, { recursive: true, force: true });
      this.state.warn(`endpoint storage unavailable at ${storage!.addr}; started without saved files (${messageOf(saved.reason)})`);
    } else {
      await placeSavedFiles(staging, saved.value, pgdata, user);
    }

    this.#baseConf = await readFile(path.join(pgdata, "postgresql.conf"), "utf8");
    await this.#writeConf(spec);
    await writeFile(path.join(pgdata, "pg_hba.conf"), pgHba);
    signal.throwIfAborted();

    const logFile = `${pgdata}.log`;
    await rm(logFile, { force: true });
    const postgres = await timed(t, "startPostgresMs", () => startPostgres({
      binaries: this.options.binaries, dataDir: pgdata, user, port: this.#port, socketDir: this.#socketDir!, logFile,
      listenAddress: this.options.pgListenAddresses, startTimeoutMs: this.options.startTimeoutMs,
    }));
    this.#postgres = postgres;
    void postgres.exited.then(async ({ code, signal: killedBy }) => {
      if (this.#stopping || this.#postgres !== postgres) return;
      const tail = await postgres.logTail(20);
      this.state.fail(`postgres exited unexpectedly (code ${code}, signal ${killedBy}); log tail:\n${tail}`);
      void this.#monitor?.stop();
      void this.#primary?.stopShipping();
    });
    signal.throwIfAborted();
    if (this.#primary) {
      await this.#primary.startShipping(() => this.#connect("postgres"), {
        onFenced: (reason) => {
          this.state.fail(reason);
          void this.#stopPostgres("immediate");
        },
        onLagging: (problem) => {
          if (problem && !this.#walLagging) this.state.warn(problem);
          if (!problem && this.#walLagging) this.deps.logger.info("WAL shipping caught up");
          this.#walLagging = problem !== undefined;
        },
        onBacklogOverLimit: (reason) => void this.#pauseWrites(spec, reason),
      });
    }

    this.#standby?.startFollowing(Math.max(10, Math.floor(this.options.rpoMs / 4)), (problem) => {
      if (problem) this.state.warn(problem);
    });

    await timed(t, "configMs", async () => {
      // A standby is read-only: its roles and databases are the primary's.
      if (!spec.skipPgCatalogUpdates && !this.#standby) await reconcileCatalog(spec, (db) => this.#connect(db));
    });
    t.totalMs = Math.round(performance.now() - started);
    signal.throwIfAborted();
    this.state.move("running", "start");
    this.deps.logger.info({ timings: t, port: this.#port }, "compute is running");
    // Off the start-up path: the activity monitor's connection and the background downloads.
    this.#monitorStarting = this.#startMonitor();
    this.deps.extensions?.afterRunning(() => installedExtensions((db) => this.#connect(db)));
  }

  async #startMonitor(): Promise<void> {
    try {
      const client = await this.#connect("postgres");
      this.#monitor = new ActivityMonitor(client, this.options.activityPollMs);
      this.#monitor.start();
    } catch (err) {
      if (!this.#stopping) this.deps.logger.warn({ err }, "could not start the activity monitor");
    }
  }

  async #osUser(): Promise<OsUser> {
    return (this.#user ??= await resolveUnprivilegedUser(this.options.osUser));
  }

  /** false: nothing laid down, PGDATA holds a timeline's files kept for a delta start. */
  async #prelayInitdb(): Promise<boolean> {
    if (await hasTimelineCache(this.options.pgdata)) return false;
    await this.#layDown({ source: "initdb" }, this.#startAbort.signal);
    return true;
  }

  /** Wipes PGDATA and lays it down from `source` (its parent made traversable for the Postgres user first). */
  async #layDown(source: Exclude<BaseDataSource, { source: "timeline" }>, signal: AbortSignal): Promise<void> {
    const { pgdata } = this.options;
    await mkdir(path.dirname(pgdata), { recursive: true, mode: 0o755 });
    await layDownBaseData(source, {
      pgdata, binaries: this.options.binaries, user: await this.#osUser(), templateRoot: this.options.templateRoot,
      downloadConcurrency: this.options.snapshotConcurrency, blobStoreOptions: this.options.blobStoreOptions, signal,
    });
  }

  async #reconfigure(spec: ComputeSpec): Promise<void> {
    const before = this.#spec!;
    for (const [field, a, b] of [
      ["tenant_id", before.tenantId, spec.tenantId],
      ["timeline_id", before.timelineId, spec.timelineId],
      ["endpoint_id", before.endpointId, spec.endpointId],
      ["pgmesh.port", before.port, spec.port],
    ] as const) {
      if (a !== b) throw new SpecError(field, `cannot change while the compute runs (it is ${a ?? "unset"}); start a new compute instead`);
    }
    this.state.move("configuration", "configure");
    try {
      if (confChanged(before, spec)) {
        await this.#writeConf(spec);
        const needRestart = await this.#query(async (client) => {
          await client.query("SELECT pg_catalog.pg_reload_conf()");
          const { rows } = await client.query<{ name: string }>(
            "SELECT name FROM pg_catalog.pg_settings WHERE context = 'postmaster' AND name = ANY($1) ORDER BY name",
            [changedSettingNames(before, spec)],
          );
          return rows.map((r) => r.name);
        });
        if (needRestart.length > 0) this.state.warn(`${needRestart.join(", ")} changed but take effect only at the next start (Postgres must restart)`);
      }
      if (extensionsChanged(before, spec)) {
        // Newly allowed extensions get their control files; the hook and background downloads do the rest.
        await this.deps.extensions?.prepare(spec, this.#preloadLibraries(spec), this.#startAbort.signal);
        this.deps.extensions?.afterRunning(() => installedExtensions((db) => this.#connect(db)));
      }
      if (!spec.skipPgCatalogUpdates && !this.#standby) await reconcileCatalog(spec, (db) => this.#connect(db));
      this.#spec = spec;
      this.state.move("running", "configure");
    } catch (err) {
      this.state.fail(`reconfiguration failed: ${messageOf(err)}`);
      throw ConnectError.from(err, Code.Internal);
    }
  }

  /** Every library Postgres loads before a session: pgmesh's, the spec's, pg_stat_statements. */
  #preloadLibraries(spec: ComputeSpec): string[] {
    const pgmesh = this.deps.extensions?.postgresSettings(this.#computeCtlAddr).preloadLibraries ?? [];
    const session = spec.settings.filter((s) => s.name === "session_preload_libraries").flatMap((s) => s.value.split(","));
    return [...sharedPreloadLibraries(spec, pgmesh), ...session.map((l) => l.trim()).filter((l) => l !== "")];
  }

  /**
   * Pauses (reason given) or resumes writes while WAL waits for the store:
   * new transactions default to read-only, through postgresql.conf, which
   * every start renders afresh, so a pause never outlives this run.
   */
  async #pauseWrites(spec: ComputeSpec, reason: string | undefined): Promise<void> {
    const paused = reason !== undefined;
    this.#writesPaused = paused;
    try {
      await this.#writeConf(spec);
      await this.#query((client) => client.query("SELECT pg_catalog.pg_reload_conf()"));
      // The postmaster re-reads its configuration asynchronously: report the change once new sessions have it.
      const wanted = paused ? "on" : "off";
      for (let attempt = 0; attempt < 100; attempt += 1) {
        const { rows } = await this.#query((client) => client.query<{ v: string }>("SELECT current_setting('default_transaction_read_only') AS v"));
        if (rows[0]!.v === wanted) break;
        await delay(20);
      }
    } catch (err) {
      this.deps.logger.warn({ err }, "could not change whether writes are paused");
    }
    if (reason) this.state.warn(reason);
    else this.deps.logger.info("WAL backlog back under --max-unshipped-wal-bytes: writes resumed");
  }

  async #writeConf(spec: ComputeSpec): Promise<void> {
    const fromExtensions = this.deps.extensions?.postgresSettings(this.#computeCtlAddr);
    const conf = renderPostgresqlConf(this.#baseConf, spec, {
      port: this.#port,
      listenAddresses: this.options.pgListenAddresses,
      socketDir: this.#socketDir!,
      preloadLibraries: fromExtensions?.preloadLibraries ?? [],
      extra: { ...fromExtensions?.settings, ...this.#standby?.settings, ...(this.#writesPaused ? { default_transaction_read_only: "on" } : {}) },
    });
    await writeFile(path.join(this.options.pgdata, "postgresql.conf"), conf);
  }

  async #query<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
    const state = this.state.state;
    if (state !== "running" && state !== "configuration") {
      throw new ConnectError(`the compute is not running (state ${state})`, Code.FailedPrecondition);
    }
    const client = await this.#connect("postgres");
    try {
      return await work(client);
    } finally {
      await client.end();
    }
  }

  /** A maintenance connection (marked with compute-ctl's application_name). */
  async #connect(database: string): Promise<pg.Client> {
    const client = new pg.Client({ connectionString: this.#adminUri(database, true) });
    // A dying Postgres ends its connections with an error event; the crash watcher reports it.
    client.on("error", (err) => this.deps.logger.debug({ err, database }, "maintenance connection closed"));
    await client.connect();
    return client;
  }

  #adminUri(database: string, maintenance: boolean): string {
    const url = this.options.connstr ? new URL(this.options.connstr) : new URL(`postgresql://${adminRole}@${connectHost(this.options.pgListenAddresses)}`);
    if (!url.port) url.port = String(this.#port);
    url.pathname = `/${encodeURIComponent(database)}`;
    if (maintenance) url.searchParams.set("application_name", computeCtlApplicationName);
    return url.toString();
  }

  async #stopPostgres(mode: ShutdownMode): Promise<void> {
    this.#stopping = true;
    await this.#monitorStarting;
    await this.#monitor?.stop();
    await this.#postgres?.stop(mode);
  }

  async #cleanUp(): Promise<void> {
    await this.#primary?.close();
    await this.#standby?.close();
    await this.deps.extensions?.close();
    if (this.#socketDir) await rm(this.#socketDir, { recursive: true, force: true });
  }
}

/** How long a clean stop may wait for the store to take the shutdown's WAL and snapshot. */
const cleanStopTimeoutMs = 120_000;

/**
 * The Unix socket directory: next to PGDATA (removed with it) unless that
 * path is too long for a socket address (108 bytes), then a fresh temp dir.
 */
async function socketDirFor(pgdata: string): Promise<string> {
  const beside = `${pgdata}.sock`;
  if (Buffer.byteLength(path.join(beside, ".s.PGSQL.65535.lock")) < 108) return beside;
  return mkdtemp(path.join(os.tmpdir(), "pgmesh-sock-"));
}

/** Whether a reconfigure changes which extensions the compute may use or where it gets them. */
function extensionsChanged(before: ComputeSpec, after: ComputeSpec): boolean {
  return JSON.stringify([before.remoteExtensions, before.extensionStore]) !== JSON.stringify([after.remoteExtensions, after.extensionStore]);
}

function connectHost(listenAddresses: string): string {
  const first = listenAddresses.split(",")[0]!.trim();
  if (first === "" || first === "*" || first === "0.0.0.0") return "127.0.0.1";
  if (first === "::") return "[::1]";
  return first.includes(":") ? `[${first}]` : first;
}

function messageOf(err: unknown): string {
  if (err instanceof ConnectError) return err.rawMessage;
  return err instanceof Error ? err.message : String(err);
}
