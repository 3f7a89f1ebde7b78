/** The steps of an import, in order; errors and status objects name the one that failed. */
export type ImportPhase =
  | "options"
  | "check"
  | "initdb"
  | "start"
  | "roles"
  | "dump"
  | "restore"
  | "vacuum"
  | "stop"
  | "upload"
  | "status";

/** Base class of every error fast-import throws on purpose. */
export class FastImportError extends Error {
  constructor(
    readonly phase: ImportPhase,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A flag or environment value that cannot be used. */
export class FastImportOptionsError extends FastImportError {
  constructor(
    readonly flag: string,
    readonly problem: string,
  ) {
    super("options", `${flag}: ${problem}`);
  }
}

/** --source is not a usable libpq URI. `redacted` never holds the password. */
export class InvalidSourceError extends FastImportError {
  constructor(
    readonly redacted: string,
    readonly problem: string,
  ) {
    super(
      "options",
      `the source connection string ${redacted} is not usable: ${problem}; give a URI like postgresql://user@host:5432/dbname (password in PGPASSWORD or in the URI)`,
    );
  }
}

/** The source server could not be reached or refused the login. */
export class SourceUnreachableError extends FastImportError {
  constructor(
    readonly redacted: string,
    readonly reason: string,
  ) {
    super(
      "check",
      `cannot connect to the source ${redacted}: ${reason}; check the host, port, database, user and password, and that the server accepts connections from here`,
    );
  }
}

/** --workdir holds files; fast-import only works in an empty or new directory. */
export class WorkdirNotEmptyError extends FastImportError {
  constructor(
    readonly workdir: string,
    readonly entries: readonly string[],
  ) {
    super(
      "check",
      `the working directory ${workdir} is not empty (it holds ${entries.slice(0, 3).map((e) => JSON.stringify(e)).join(", ")}${entries.length > 3 ? ", …" : ""}); give an empty or new directory, nothing in it was touched`,
    );
  }
}

/** The target timeline exists already; fast-import only creates new timelines. */
export class TimelineExistsError extends FastImportError {
  constructor(readonly timeline: { readonly tenantId: string; readonly timelineId: string }) {
    super(
      "check",
      `timeline ${timeline.tenantId}/${timeline.timelineId} already exists; fast-import only creates a new timeline: choose another --timeline-id, or delete it (pgmesh-timeline delete) first`,
    );
  }
}

/** The prefix already holds a complete snapshot; fast-import does not overwrite one. */
export class SnapshotExistsError extends FastImportError {
  constructor(readonly statusKey: string) {
    super(
      "check",
      `${statusKey} says the prefix already holds a complete snapshot; import into a new --prefix, or delete the old snapshot first (nothing was changed)`,
    );
  }
}

/** The working directory's file system ran out of space. */
export class DiskFullError extends FastImportError {
  constructor(
    phase: ImportPhase,
    readonly workdir: string,
    readonly detail: string,
  ) {
    super(
      phase,
      `the working directory ${workdir} ran out of space during ${phase} (${detail}); give --workdir a volume with room for the dump and the restored database (about 2-3 times the source size)`,
    );
  }
}

/** A Postgres client program (pg_dump, pg_restore, pg_dumpall…) failed. */
export class ToolFailedError extends FastImportError {
  constructor(
    phase: ImportPhase,
    readonly program: string,
    readonly target: string,
    readonly exitCode: number | undefined,
    readonly errors: readonly string[],
  ) {
    super(
      phase,
      `${program} failed for ${target}${exitCode === undefined ? "" : ` (exit code ${exitCode})`}: ${
        errors.length > 0 ? errors.join(" | ") : "no error message"
      }`,
    );
  }
}

/** The local Postgres did not stop cleanly, so its PGDATA is not a usable snapshot. */
export class UncleanShutdownError extends FastImportError {
  constructor(readonly state: string) {
    super("stop", `the local Postgres did not shut down cleanly (cluster state "${state}"); the snapshot would need crash recovery, so it is not uploaded`);
  }
}

/** The run was cancelled (SIGINT/SIGTERM or an aborted signal). */
export class ImportCancelledError extends FastImportError {
  constructor(phase: ImportPhase) {
    super(phase, `the import was cancelled during ${phase}`);
  }
}

/** Normalises anything thrown in a phase into a FastImportError of that phase. */
export function asFastImportError(phase: ImportPhase, error: unknown): FastImportError {
  if (error instanceof FastImportError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new FastImportError(phase, `${phase} failed: ${message}`, { cause: error });
}
