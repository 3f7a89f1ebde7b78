import { Code } from "@connectrpc/connect";
import type { BlobStore } from "../blob/index.js";
import { formatLsn, parseLsn } from "../wal/index.js";
import { claimJson, getJson, putJson } from "./json-object.js";
import { storeCall, TimelineError } from "./timeline-error.js";
import { generationKey, generationsPrefix, generationStartKey, parseGenerationKey, type TimelineRef } from "./timeline-keys.js";

/** A primary's claim on a timeline: generation numbers are handed out once each, in order. */
export interface GenerationClaim {
  readonly generation: number;
  readonly computeId: string;
  readonly claimedAt: string;
}

/** What generations/ holds: every claim, and where each generation that began writing starts. */
export interface Generations {
  /** The highest claimed generation (0: none). */
  readonly highest: number;
  /** Generation -> start LSN, for those that wrote a start record, in generation order. */
  readonly starts: ReadonlyMap<number, bigint>;
}

export async function listGenerations(store: BlobStore, ref: TimelineRef): Promise<Generations> {
  const prefix = generationsPrefix(ref);
  let highest = 0;
  const startKeys: { generation: number; key: string }[] = [];
  await storeCall(ref, prefix, "list generations", async () => {
    for await (const info of store.listAll(prefix)) {
      const parsed = parseGenerationKey(info.key);
      if (!parsed) continue;
      if (parsed.kind === "claim") highest = Math.max(highest, parsed.generation);
      else startKeys.push({ generation: parsed.generation, key: info.key });
    }
  });
  const starts = new Map<number, bigint>();
  for (const { generation, key } of startKeys.sort((a, b) => a.generation - b.generation)) {
    const value = (await getJson(store, ref, key)) as { start_lsn?: unknown } | undefined;
    if (value === undefined) continue;
    try {
      starts.set(generation, parseLsn(String(value.start_lsn)));
    } catch {
      throw new TimelineError(ref, `generation ${generation}'s start record has no valid start_lsn`, Code.DataLoss, key);
    }
  }
  return { highest, starts };
}

/**
 * Claims the next generation for `computeId`. FAILED_PRECONDITION when
 * another compute claimed it first (the message names it).
 */
export async function claimNextGeneration(store: BlobStore, ref: TimelineRef, computeId: string): Promise<GenerationClaim> {
  const { highest } = await listGenerations(store, ref);
  const claim: GenerationClaim = { generation: highest + 1, computeId, claimedAt: new Date().toISOString() };
  const key = generationKey(ref, claim.generation);
  const result = await claimJson(store, ref, key, { generation: claim.generation, compute_id: computeId, claimed_at: claim.claimedAt });
  if (!result.won) {
    const holder = result.holder as { compute_id?: unknown } | undefined;
    throw new TimelineError(
      ref,
      `the timeline already has a primary starting (generation ${claim.generation}, compute ${String(holder?.compute_id ?? "unknown")}); ` +
        "stop that compute first, or retry to fence it",
      Code.FailedPrecondition,
      key,
    );
  }
  return claim;
}

/** Records where `generation` starts writing; from now on its WAL is part of the history. */
export async function writeGenerationStart(store: BlobStore, ref: TimelineRef, generation: number, startLsn: bigint): Promise<void> {
  await putJson(store, ref, generationStartKey(ref, generation), { generation, start_lsn: formatLsn(startLsn) });
}

/** The claim of the generation after `generation`, if a newer primary took over (this one is fenced). */
export async function successorOf(store: BlobStore, ref: TimelineRef, generation: number): Promise<GenerationClaim | undefined> {
  const key = generationKey(ref, generation + 1);
  const value = (await getJson(store, ref, key)) as { compute_id?: unknown; claimed_at?: unknown } | undefined;
  if (value === undefined) return undefined;
  return { generation: generation + 1, computeId: String(value.compute_id ?? "unknown"), claimedAt: String(value.claimed_at ?? "") };
}
