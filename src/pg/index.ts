export { checkPgBinaries, pgProgram, systemPgBinaries, PgBinariesNotFoundError, type PgBinaries } from "./pg-binaries.js";
export { outputTail } from "./output-tail.js";
export { removeOrphanedShmem, type RemoveOrphanedShmemOptions } from "./orphaned-shmem.js";
export { chownTree, resolveUnprivilegedUser, runAsPrefix, type OsUser } from "./os-user.js";
export {
  initdb,
  runProgramAs,
  startPostgres,
  PostgresStartError,
  RunningPostgres,
  type InitdbOptions,
  type ShutdownMode,
  type StartPostgresOptions,
} from "./local-postgres.js";
