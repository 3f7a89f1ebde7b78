import { ImportCancelledError, type ImportPhase } from "./fast-import-errors.js";
import type { ImportProgress, ImportReporter } from "./import-reporter.js";

/** What a phase reports when sampled; the runner adds phase, detail and elapsed time. */
export type PhaseProgress = Omit<ImportProgress, "phase" | "detail" | "phaseElapsedMs">;

/** Lets a running phase publish its progress: `read` is polled at the reporter's pace. */
export type SampleProgress = (read: () => Promise<PhaseProgress> | PhaseProgress) => void;

/**
 * Runs the phases of an import one after another: checks for cancellation
 * before each, tells the reporter, times each (a phase that runs per
 * database adds up), samples progress while it runs, and remembers the
 * current phase so a failure can name it.
 */
export class PhaseRunner {
  readonly timingsMs: Record<string, number> = {};
  #current: ImportPhase = "options";
  #sampler: NodeJS.Timeout | undefined;

  constructor(
    private readonly reporter: ImportReporter,
    private readonly signal?: AbortSignal,
  ) {}

  get current(): ImportPhase {
    return this.#current;
  }

  async run<T>(phase: ImportPhase, detail: string, work: (sample: SampleProgress) => Promise<T>): Promise<T> {
    if (this.signal?.aborted) throw new ImportCancelledError(phase);
    this.#current = phase;
    this.reporter.phaseStarted(phase, detail);
    const t0 = performance.now();
    const sample: SampleProgress = (read) => {
      this.#sampler = setInterval(() => {
        void Promise.resolve(read()).then(
          (progress) => this.reporter.progress({ phase, detail, phaseElapsedMs: performance.now() - t0, ...progress }),
          () => undefined,
        );
      }, this.reporter.progressIntervalMs);
    };
    try {
      return await work(sample);
    } finally {
      this.stopSampling();
      const elapsed = Math.round(performance.now() - t0);
      this.timingsMs[phase] = (this.timingsMs[phase] ?? 0) + elapsed;
      this.reporter.phaseFinished(phase, elapsed);
    }
  }

  stopSampling(): void {
    clearInterval(this.#sampler);
    this.#sampler = undefined;
  }
}
