import type { ImportPhase } from "./fast-import-errors.js";

/** Where an import stands, sampled while a phase runs. */
export interface ImportProgress {
  readonly phase: ImportPhase;
  /** e.g. the database being dumped. */
  readonly detail: string;
  readonly bytesDone: number;
  /** An estimate when known (the source's size for dump and restore). */
  readonly bytesTotal: number | undefined;
  readonly itemsDone: number;
  readonly itemsTotal: number | undefined;
  /** "tables" or "files". */
  readonly itemUnit: string;
  readonly phaseElapsedMs: number;
}

/**
 * What an import tells its operator. The terminal reporter draws a live line;
 * the log reporter writes JSON lines. Neither ever receives a password.
 */
export interface ImportReporter {
  /** How often the import samples progress for this reporter. */
  readonly progressIntervalMs: number;
  phaseStarted(phase: ImportPhase, detail: string): void;
  progress(progress: ImportProgress): void;
  phaseFinished(phase: ImportPhase, elapsedMs: number): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
}

/** "12.3 MB" — decimal units, as rates are usually read. */
export function formatBytes(bytes: number): string {
  if (bytes < 1000) return `${bytes} B`;
  const units = ["kB", "MB", "GB", "TB"];
  let value = bytes / 1000;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`;
}

/** Bytes per second, 0 before any time has passed. */
export function rateOf(bytes: number, elapsedMs: number): number {
  return elapsedMs > 0 ? (bytes * 1000) / elapsedMs : 0;
}
