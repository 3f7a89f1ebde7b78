import type { Registry } from "prom-client";
import { statsMetrics } from "../server/index.js";
import type { BundleCache } from "./bundle-cache.js";

/** Prometheus metrics of an extension-store in cache mode: hits, misses, fetches, evictions, bytes and entries held. */
export function bundleCacheMetrics(cache: BundleCache): Registry {
  return statsMetrics(() => cache.stats(), [
    { kind: "counter", stat: "hits", name: "pgmesh_extension_cache_hits_total", help: "Downloads served from the node-local cache" },
    { kind: "counter", stat: "misses", name: "pgmesh_extension_cache_misses_total", help: "Downloads of a bundle the cache did not hold" },
    { kind: "counter", stat: "upstreamFetches", name: "pgmesh_extension_cache_upstream_fetches_total", help: "Bundles fetched from the upstream store (concurrent misses share one)" },
    { kind: "counter", stat: "evictions", name: "pgmesh_extension_cache_evictions_total", help: "Bundles evicted, least recently used first, to stay within --cache-bytes" },
    { kind: "counter", stat: "corruptEntries", name: "pgmesh_extension_cache_corrupt_entries_total", help: "Cached bundles whose bytes no longer matched their sha256 (dropped and fetched again)" },
    { kind: "gauge", stat: "bytes", name: "pgmesh_extension_cache_bytes", help: "Bytes of bundles held in the cache" },
    { kind: "gauge", stat: "entries", name: "pgmesh_extension_cache_entries", help: "Bundles held in the cache" },
  ]);
}
