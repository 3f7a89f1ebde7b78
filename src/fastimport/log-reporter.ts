import type { Logger } from "pino";
import type { ImportPhase } from "./fast-import-errors.js";
import { rateOf, type ImportProgress, type ImportReporter } from "./import-reporter.js";

/** JSON log lines through pino: phase start and end, and progress every few seconds. */
export class LogReporter implements ImportReporter {
  readonly progressIntervalMs = 5_000;

  constructor(private readonly logger: Logger) {}

  phaseStarted(phase: ImportPhase, detail: string): void {
    this.logger.info({ phase, detail }, `${phase} started`);
  }

  progress(p: ImportProgress): void {
    this.logger.info(
      {
        phase: p.phase,
        detail: p.detail,
        bytes_done: p.bytesDone,
        bytes_total: p.bytesTotal,
        [`${p.itemUnit}_done`]: p.itemsDone,
        [`${p.itemUnit}_total`]: p.itemsTotal,
        bytes_per_second: Math.round(rateOf(p.bytesDone, p.phaseElapsedMs)),
      },
      "progress",
    );
  }

  phaseFinished(phase: ImportPhase, elapsedMs: number): void {
    this.logger.info({ phase, elapsed_ms: elapsedMs }, `${phase} finished`);
  }

  info(message: string, fields: Record<string, unknown> = {}): void {
    this.logger.info(fields, message);
  }

  warn(message: string, fields: Record<string, unknown> = {}): void {
    this.logger.warn(fields, message);
  }
}
