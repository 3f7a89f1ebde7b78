import { Counter, Gauge, Registry } from "prom-client";
import type { BundleCache, BundleCacheStats } from "./bundle-cache.js";

/** The cache's counters, read from BundleCache.stats() at scrape time. */
const counters: readonly { readonly stat: keyof BundleCacheStats; readonly name: string; readonly help: string }[] = [
  { stat: "hits", name: "pgmesh_extension_cache_hits_total", help: "Downloads served from the node-local cache" },
  { stat: "misses", name: "pgmesh_extension_cache_misses_total", help: "Downloads of a bundle the cache did not hold" },
  { stat: "upstreamFetches", name: "pgmesh_extension_cache_upstream_fetches_total", help: "Bundles fetched from the upstream store (concurrent misses share one)" },
  { stat: "evictions", name: "pgmesh_extension_cache_evictions_total", help: "Bundles evicted, least recently used first, to stay within --cache-bytes" },
  { stat: "corruptEntries", name: "pgmesh_extension_cache_corrupt_entries_total", help: "Cached bundles whose bytes no longer matched their sha256 (dropped and fetched again)" },
];

/** Prometheus metrics of an extension-store in cache mode: hits, misses, fetches, evictions, bytes and entries held. */
export function bundleCacheMetrics(cache: BundleCache): Registry {
  const registry = new Registry();
  for (const { stat, name, help } of counters) {
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        this.reset();
        this.inc(cache.stats()[stat]);
      },
    });
  }
  new Gauge({
    name: "pgmesh_extension_cache_bytes",
    help: "Bytes of bundles held in the cache",
    registers: [registry],
    collect() {
      this.set(cache.stats().bytes);
    },
  });
  new Gauge({
    name: "pgmesh_extension_cache_entries",
    help: "Bundles held in the cache",
    registers: [registry],
    collect() {
      this.set(cache.stats().entries);
    },
  });
  return registry;
}
