/**
 * Settings for the local Postgres while it loads the dump, passed as `-c`
 * flags so none of them ends up in the snapshot's postgresql.conf: no WAL
 * beyond crash safety (which a throw-away load does not need), no fsync, no
 * autovacuum racing the restore (fast-import runs VACUUM itself), checkpoints
 * only when WAL grows large, and memory split by --memory-mb:
 * a fifth for shared_buffers, three fifths for index builds, shared by the
 * --jobs restore workers that may build indexes at once.
 */
export function bulkLoadSettings(memoryMb: number, jobs: number): Record<string, string> {
  const sharedBuffersMb = Math.max(16, Math.floor(memoryMb * 0.2));
  const maintenanceWorkMemMb = Math.max(1, Math.floor((memoryMb * 0.6) / jobs));
  return {
    wal_level: "minimal",
    max_wal_senders: "0",
    archive_mode: "off",
    fsync: "off",
    full_page_writes: "off",
    synchronous_commit: "off",
    autovacuum: "off",
    checkpoint_timeout: "1d",
    max_wal_size: "4GB",
    min_wal_size: "32MB",
    wal_buffers: "16MB",
    shared_buffers: `${sharedBuffersMb}MB`,
    maintenance_work_mem: `${maintenanceWorkMemMb}MB`,
    max_worker_processes: String(jobs + 8),
    max_parallel_workers: String(jobs),
    max_parallel_maintenance_workers: String(jobs),
    max_parallel_workers_per_gather: String(jobs),
    effective_io_concurrency: "100",
    // One connection per restore job, the vacuum pool and a spare.
    max_connections: String(Math.max(20, jobs * 2 + 5)),
  };
}
