import { UsageError } from "./usage-error.js";

const unitSec: Readonly<Record<string, number>> = { s: 1, m: 60, h: 3600, d: 86400 };

/** Parses "90s", "15m", "1h", "7d" or a bare number of seconds into seconds; `source` names the flag in errors. */
export function parseDurationSec(text: string, source: string): number {
  const match = /^(\d+(?:\.\d+)?)([smhd]?)$/.exec(text.trim());
  if (!match) throw new UsageError(`${source} must be a duration like 90s, 15m, 1h or 7d, got "${text}"`);
  return Number(match[1]) * unitSec[match[2] || "s"]!;
}
