import { resourceIdPattern } from "../ids/index.js";

/*
 * The durable layout of timelines under a store's root or prefix:
 *
 *   tenants/<tenant>/files/<sha256>                         content-addressed file chunks of every snapshot of the tenant
 *   tenants/<tenant>/timelines/<timeline>/timeline.json     written once
 *     generations/<gen>.json                                a primary's claim (one winner per number)
 *     generations/<gen>.start.json                          where the generation's WAL starts; written before it writes
 *     wal/<start>-<end>-g<gen>-<sha256/16>                  raw WAL bytes [start, end) of one segment
 *     snapshots/<lsn>-g<gen>.json                           a snapshot's manifest, written last
 *
 * LSNs are 16 upper-case hex digits and generations 10 decimal digits, so key
 * order is LSN (or generation) order.
 */

/** A timeline of a tenant: Neon's tenant_id and timeline_id. */
export interface TimelineRef {
  readonly tenantId: string;
  readonly timelineId: string;
}

/** A WAL chunk as its key names it. */
export interface WalChunkName {
  readonly startLsn: bigint;
  readonly endLsn: bigint;
  readonly generation: number;
  /** The first 16 hex digits of the bytes' sha256. */
  readonly sha256Prefix: string;
}

/** A snapshot as its manifest key names it. */
export interface SnapshotName {
  readonly lsn: bigint;
  readonly generation: number;
}

/** Tenant and timeline ids: the rule every service shares. */
export const timelineIdPattern = resourceIdPattern;

const walChunkPattern = /^([0-9A-F]{16})-([0-9A-F]{16})-g(\d{10})-([0-9a-f]{16})$/;
const snapshotPattern = /^([0-9A-F]{16})-g(\d{10})\.json$/;
const generationPattern = /^(\d{10})\.json$/;
const generationStartPattern = /^(\d{10})\.start\.json$/;

export function lsnHex(lsn: bigint): string {
  return lsn.toString(16).toUpperCase().padStart(16, "0");
}

function generationDigits(generation: number): string {
  return String(generation).padStart(10, "0");
}

/** "tenant/timeline", for messages. */
export function describeTimeline(ref: TimelineRef): string {
  return `${ref.tenantId}/${ref.timelineId}`;
}

export function timelinePrefix(ref: TimelineRef): string {
  return `tenants/${ref.tenantId}/timelines/${ref.timelineId}/`;
}

export function timelinesPrefix(tenantId: string): string {
  return `tenants/${tenantId}/timelines/`;
}

export function timelineMetaKey(ref: TimelineRef): string {
  return `${timelinePrefix(ref)}timeline.json`;
}

export function generationsPrefix(ref: TimelineRef): string {
  return `${timelinePrefix(ref)}generations/`;
}

export function generationKey(ref: TimelineRef, generation: number): string {
  return `${generationsPrefix(ref)}${generationDigits(generation)}.json`;
}

export function generationStartKey(ref: TimelineRef, generation: number): string {
  return `${generationsPrefix(ref)}${generationDigits(generation)}.start.json`;
}

export function walPrefix(ref: TimelineRef): string {
  return `${timelinePrefix(ref)}wal/`;
}

export function walChunkKey(ref: TimelineRef, chunk: WalChunkName): string {
  return `${walPrefix(ref)}${lsnHex(chunk.startLsn)}-${lsnHex(chunk.endLsn)}-g${generationDigits(chunk.generation)}-${chunk.sha256Prefix}`;
}

export function snapshotsPrefix(ref: TimelineRef): string {
  return `${timelinePrefix(ref)}snapshots/`;
}

export function snapshotKey(ref: TimelineRef, snapshot: SnapshotName): string {
  return `${snapshotsPrefix(ref)}${lsnHex(snapshot.lsn)}-g${generationDigits(snapshot.generation)}.json`;
}

export function fileChunkKey(tenantId: string, sha256: string): string {
  return `tenants/${tenantId}/files/${sha256}`;
}

/** The chunk a key under walPrefix() names, or undefined for anything else. */
export function parseWalChunkKey(key: string): WalChunkName | undefined {
  const m = walChunkPattern.exec(key.slice(key.lastIndexOf("/") + 1));
  if (!m) return undefined;
  return { startLsn: BigInt(`0x${m[1]}`), endLsn: BigInt(`0x${m[2]}`), generation: Number(m[3]), sha256Prefix: m[4]! };
}

export function parseSnapshotKey(key: string): SnapshotName | undefined {
  const m = snapshotPattern.exec(key.slice(key.lastIndexOf("/") + 1));
  return m ? { lsn: BigInt(`0x${m[1]}`), generation: Number(m[2]) } : undefined;
}

/** A key under generationsPrefix(): a claim, a start record, or neither (undefined). */
export function parseGenerationKey(key: string): { generation: number; kind: "claim" | "start" } | undefined {
  const name = key.slice(key.lastIndexOf("/") + 1);
  const claim = generationPattern.exec(name);
  if (claim) return { generation: Number(claim[1]), kind: "claim" };
  const start = generationStartPattern.exec(name);
  return start ? { generation: Number(start[1]), kind: "start" } : undefined;
}

/** Where the timeline's WAL begins after garbage collection deleted older chunks. */
export function walHorizonKey(ref: TimelineRef): string {
  return `${timelinePrefix(ref)}wal-horizon.json`;
}
