/** Milliseconds of each start-up phase (overlapping phases run in parallel). */
export interface StartupTimings {
  waitForSpecMs: number;
  baseDataMs: number;
  savedFilesMs: number;
  extensionsMs: number;
  startPostgresMs: number;
  configMs: number;
  totalMs: number;
}

export const startupPhases = ["wait_for_spec", "base_data", "saved_files", "extensions", "start_postgres", "config", "total"] as const;
export type StartupPhase = (typeof startupPhases)[number];

export function emptyTimings(): StartupTimings {
  return { waitForSpecMs: 0, baseDataMs: 0, savedFilesMs: 0, extensionsMs: 0, startPostgresMs: 0, configMs: 0, totalMs: 0 };
}

/** The timings by Neon-style phase name (wait_for_spec, base_data, …, total). */
export function timingsByPhase(t: StartupTimings): Record<StartupPhase, number> {
  return {
    wait_for_spec: t.waitForSpecMs,
    base_data: t.baseDataMs,
    saved_files: t.savedFilesMs,
    extensions: t.extensionsMs,
    start_postgres: t.startPostgresMs,
    config: t.configMs,
    total: t.totalMs,
  };
}

/** Runs `work` and stores its duration (ms, rounded) in `timings[key]`, also when it fails. */
export async function timed<T>(timings: StartupTimings, key: keyof StartupTimings, work: () => Promise<T>): Promise<T> {
  const started = performance.now();
  try {
    return await work();
  } finally {
    timings[key] = Math.round(performance.now() - started);
  }
}
