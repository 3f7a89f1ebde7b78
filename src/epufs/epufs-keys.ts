import type { EndpointIds } from "./endpoint-ref.js";

/**
 * Blob key layout: tenants/<tenant>/timelines/<timeline>/endpoints/<endpoint>/pgdata/<path>,
 * and the endpoint's quota lease under leases/<the same endpoint prefix>quota/.
 */
export function tenantPrefix(tenantId: string): string {
  return `tenants/${tenantId}/`;
}

export function timelinePrefix(tenantId: string, timelineId: string): string {
  return `${tenantPrefix(tenantId)}timelines/${timelineId}/`;
}

export function endpointPrefix(ids: EndpointIds): string {
  return `${timelinePrefix(ids.tenantId, ids.timelineId)}endpoints/${ids.endpointId}/`;
}

/** Where an endpoint's files live; strip it from a key to get the PGDATA path. */
export function pgdataPrefix(ids: EndpointIds): string {
  return `${endpointPrefix(ids)}pgdata/`;
}

export function fileKey(ids: EndpointIds, path: string): string {
  return pgdataPrefix(ids) + path;
}

/**
 * Where the endpoint's quota lease lives (see withBlobLease): outside the
 * tenant's files, so it takes no quota and deletes do not count it.
 */
export function quotaLeasePrefix(ids: EndpointIds): string {
  return `${leasesPrefixOf(endpointPrefix(ids))}quota/`;
}

/** The leases kept for the files under `prefix`. */
export function leasesPrefixOf(prefix: string): string {
  return `leases/${prefix}`;
}
