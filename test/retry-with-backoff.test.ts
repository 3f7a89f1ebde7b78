import { describe, expect, it } from "vitest";
import { backoffDelayMs } from "../src/retry/index.js";

const policy = { maxAttempts: 10, initialBackoffMs: 100, maxBackoffMs: 1_000 };

describe("retry backoff", () => {
  it("doubles the wait after each attempt up to the maximum, jittered between half of it and all of it", () => {
    const lowest = [1, 2, 3, 4, 5, 6].map((attempt) => backoffDelayMs(policy, attempt, () => 0));
    const highest = [1, 2, 3, 4, 5, 6].map((attempt) => backoffDelayMs(policy, attempt, () => 0.999_999));
    expect(lowest).toEqual([50, 100, 200, 400, 500, 500]);
    expect(highest.map(Math.round)).toEqual([100, 200, 400, 800, 1_000, 1_000]);
  });

  it("spreads the waits of clients that failed together, so they do not retry in lockstep", () => {
    const waits = new Set(Array.from({ length: 20 }, () => backoffDelayMs(policy, 3)));
    expect(waits.size).toBeGreaterThan(10);
  });
});
