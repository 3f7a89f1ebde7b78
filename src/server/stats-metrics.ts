import { Counter, Gauge, Registry } from "prom-client";

/** The keys of `T` whose values are numbers. */
type NumericKey<T> = { [K in keyof T]: T[K] extends number ? K : never }[keyof T] & string;

/** One metric read from a stats object: a counter (only grows) or a gauge. */
export interface StatMetric<Stats> {
  readonly kind: "counter" | "gauge";
  readonly stat: NumericKey<Stats>;
  readonly name: string;
  readonly help: string;
}

/** A registry whose metrics read `stats()` at scrape time, for components that keep their own counts. */
export function statsMetrics<Stats extends object>(stats: () => Stats, metrics: readonly StatMetric<Stats>[]): Registry {
  const registry = new Registry();
  for (const { kind, stat, name, help } of metrics) {
    if (kind === "counter") {
      new Counter({
        name,
        help,
        registers: [registry],
        collect() {
          this.reset();
          this.inc(stats()[stat] as number);
        },
      });
    } else {
      new Gauge({
        name,
        help,
        registers: [registry],
        collect() {
          this.set(stats()[stat] as number);
        },
      });
    }
  }
  return registry;
}
