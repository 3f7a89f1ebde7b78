import type { ImportPhase } from "./fast-import-errors.js";
import { formatBytes, rateOf, type ImportProgress, type ImportReporter } from "./import-reporter.js";

/**
 * A live status line on a terminal: phase, bytes (of the estimate), items
 * done and the rate, redrawn in place; each finished phase leaves one line.
 */
export class TtyReporter implements ImportReporter {
  readonly progressIntervalMs = 500;
  private drawn = false;

  constructor(private readonly out: NodeJS.WriteStream) {}

  phaseStarted(phase: ImportPhase, detail: string): void {
    this.draw(`${phase}: ${detail}`);
  }

  progress(p: ImportProgress): void {
    const bytes = p.bytesTotal ? `${formatBytes(p.bytesDone)} / ~${formatBytes(p.bytesTotal)}` : formatBytes(p.bytesDone);
    const items = `${p.itemsDone}${p.itemsTotal === undefined ? "" : `/${p.itemsTotal}`} ${p.itemUnit}`;
    const rate = `${formatBytes(rateOf(p.bytesDone, p.phaseElapsedMs))}/s`;
    this.draw(`${p.phase} ${p.detail}: ${bytes}, ${items}, ${rate}, ${(p.phaseElapsedMs / 1000).toFixed(0)} s`);
  }

  phaseFinished(phase: ImportPhase, elapsedMs: number): void {
    this.line(`✓ ${phase} (${(elapsedMs / 1000).toFixed(1)} s)`);
  }

  info(message: string): void {
    this.line(message);
  }

  warn(message: string): void {
    this.line(`warning: ${message}`);
  }

  private draw(text: string): void {
    const width = Math.max(20, (this.out.columns ?? 100) - 1);
    this.out.write(`\r\x1b[2K${text.length > width ? `${text.slice(0, width - 1)}…` : text}`);
    this.drawn = true;
  }

  private line(text: string): void {
    this.out.write(`${this.drawn ? "\r\x1b[2K" : ""}${text}\n`);
    this.drawn = false;
  }
}
