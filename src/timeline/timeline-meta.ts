import { Code } from "@connectrpc/connect";
import type { BlobStore } from "../blob/index.js";
import { formatLsn, parseLsn } from "../wal/index.js";
import { claimJson, getJson } from "./json-object.js";
import { TimelineError } from "./timeline-error.js";
import { timelineMetaKey, type TimelineRef } from "./timeline-keys.js";

/** Where a branch starts: its ancestor timeline (same tenant) at an LSN. */
export interface TimelineAncestor {
  readonly timelineId: string;
  readonly lsn: bigint;
}

/** timeline.json: written once, when the timeline is created. */
export interface TimelineMeta extends TimelineRef {
  readonly pgMajor: number;
  /** The Postgres timeline id of every WAL byte (a pgmesh timeline never switches it). */
  readonly pgTli: number;
  readonly walSegmentBytes: number;
  readonly createdAt: Date;
  readonly ancestor: TimelineAncestor | null;
}

interface TimelineMetaJson {
  tenant_id: string;
  timeline_id: string;
  pg_major: number;
  pg_tli: number;
  wal_segment_bytes: number;
  created_at: string;
  ancestor: { timeline_id: string; lsn: string } | null;
}

export function timelineMetaToJson(meta: TimelineMeta): TimelineMetaJson {
  return {
    tenant_id: meta.tenantId,
    timeline_id: meta.timelineId,
    pg_major: meta.pgMajor,
    pg_tli: meta.pgTli,
    wal_segment_bytes: meta.walSegmentBytes,
    created_at: meta.createdAt.toISOString(),
    ancestor: meta.ancestor && { timeline_id: meta.ancestor.timelineId, lsn: formatLsn(meta.ancestor.lsn) },
  };
}

function timelineMetaFromJson(ref: TimelineRef, value: unknown): TimelineMeta {
  const key = timelineMetaKey(ref);
  const json = value as Partial<TimelineMetaJson>;
  const bad = (what: string): never => {
    throw new TimelineError(ref, `timeline.json is malformed: ${what}`, Code.DataLoss, key);
  };
  if (typeof json !== "object" || json === null) bad("not an object");
  if (json.tenant_id !== ref.tenantId || json.timeline_id !== ref.timelineId) bad("it names another timeline");
  if (!Number.isInteger(json.pg_major) || !Number.isInteger(json.pg_tli) || !Number.isInteger(json.wal_segment_bytes)) {
    bad("pg_major, pg_tli or wal_segment_bytes is not an integer");
  }
  let ancestor: TimelineAncestor | null = null;
  if (json.ancestor) {
    if (typeof json.ancestor.timeline_id !== "string" || typeof json.ancestor.lsn !== "string") bad("ancestor is malformed");
    try {
      ancestor = { timelineId: json.ancestor.timeline_id, lsn: parseLsn(json.ancestor.lsn) };
    } catch {
      bad(`ancestor lsn ${JSON.stringify(json.ancestor.lsn)} is not an LSN`);
    }
  }
  return {
    tenantId: ref.tenantId,
    timelineId: ref.timelineId,
    pgMajor: json.pg_major!,
    pgTli: json.pg_tli!,
    walSegmentBytes: json.wal_segment_bytes!,
    createdAt: new Date(json.created_at ?? 0),
    ancestor,
  };
}

/** The timeline's timeline.json, or undefined when the timeline does not exist. */
export async function readTimelineMeta(store: BlobStore, ref: TimelineRef): Promise<TimelineMeta | undefined> {
  const value = await getJson(store, ref, timelineMetaKey(ref));
  return value === undefined ? undefined : timelineMetaFromJson(ref, value);
}

/** As readTimelineMeta, NOT_FOUND when the timeline does not exist. */
export async function requireTimelineMeta(store: BlobStore, ref: TimelineRef): Promise<TimelineMeta> {
  const meta = await readTimelineMeta(store, ref);
  if (!meta) throw new TimelineError(ref, "the timeline does not exist", Code.NotFound, timelineMetaKey(ref));
  return meta;
}

/**
 * Creates the timeline unless it exists (exactly one creator wins a race);
 * returns the timeline.json that holds, the caller's or the winner's.
 */
export async function createTimelineMeta(store: BlobStore, meta: TimelineMeta): Promise<TimelineMeta> {
  const claim = await claimJson(store, meta, timelineMetaKey(meta), timelineMetaToJson(meta));
  return claim.won ? meta : timelineMetaFromJson(meta, claim.holder);
}
