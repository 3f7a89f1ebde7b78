/** How the timeline control plane collects garbage; every field is optional. */
export interface TimelineCtlOptions {
  /** Point-in-time starts stay possible this far back (--pitr-retention; default 7 days). */
  readonly pitrRetentionMs?: number;
  /** Unreferenced file chunks younger than this stay (--file-chunk-grace; default 1 hour). */
  readonly fileChunkGraceMs?: number;
}

export interface CompiledTimelineCtlOptions {
  readonly pitrRetentionMs: number;
  readonly fileChunkGraceMs: number;
}

export const defaultPitrRetentionMs = 7 * 86_400_000;
export const defaultFileChunkGraceMs = 3_600_000;

/** Options a flag or a request carries that are not valid; the message names the flag. */
export class TimelineCtlOptionsError extends Error {
  constructor(readonly flag: string, detail: string) {
    super(`${flag} ${detail}`);
    this.name = "TimelineCtlOptionsError";
  }
}

/** Validates and defaults TimelineCtlOptions; throws TimelineCtlOptionsError naming the flag. */
export function compileTimelineCtlOptions(options: TimelineCtlOptions = {}): CompiledTimelineCtlOptions {
  return {
    pitrRetentionMs: nonNegativeMs(options.pitrRetentionMs, defaultPitrRetentionMs, "--pitr-retention"),
    fileChunkGraceMs: nonNegativeMs(options.fileChunkGraceMs, defaultFileChunkGraceMs, "--file-chunk-grace"),
  };
}

function nonNegativeMs(value: number | undefined, fallback: number, flag: string): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value < 0) throw new TimelineCtlOptionsError(flag, `must be a duration of zero or more, got ${value} ms`);
  return Math.round(value);
}
