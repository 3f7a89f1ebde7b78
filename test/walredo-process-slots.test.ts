import { describe, expect, it } from "vitest";
import { ProcessSlots } from "../src/walredo/process-slots.js";

describe("ProcessSlots", () => {
  it("never has more slots taken than its capacity", () => {
    const slots = new ProcessSlots(2);
    expect([slots.tryTake(), slots.tryTake(), slots.tryTake()]).toEqual([true, true, false]);
    expect(slots.inUse).toBe(2);
  });

  it("gives a slot given back to the longest waiter, keeping the count", async () => {
    const slots = new ProcessSlots(1);
    slots.tryTake();
    const order: string[] = [];
    const first = slots.take(60_000).then((taken) => order.push(`first ${taken}`));
    const second = slots.take(60_000).then((taken) => order.push(`second ${taken}`));
    expect(slots.waiting).toBe(2);
    slots.release();
    await first;
    expect({ order, inUse: slots.inUse, waiting: slots.waiting }).toEqual({ order: ["first true"], inUse: 1, waiting: 1 });
    slots.release();
    await second;
    slots.release();
    expect({ order, inUse: slots.inUse, waiting: slots.waiting }).toEqual({ order: ["first true", "second true"], inUse: 0, waiting: 0 });
  });

  it("tells a waiter no after the timeout, and leaves the line", async () => {
    const slots = new ProcessSlots(1);
    slots.tryTake();
    await expect(slots.take(20)).resolves.toBe(false);
    expect(slots.waiting).toBe(0);
    slots.release();
    expect(slots.inUse).toBe(0);
  });

  it("tells every waiter no when cancelled", async () => {
    const slots = new ProcessSlots(1);
    slots.tryTake();
    const waiting = [slots.take(60_000), slots.take(60_000)];
    slots.cancelWaiters();
    await expect(Promise.all(waiting)).resolves.toEqual([false, false]);
    expect({ inUse: slots.inUse, waiting: slots.waiting }).toEqual({ inUse: 1, waiting: 0 });
  });

  it("refuses a release without a slot taken", () => {
    expect(() => new ProcessSlots(1).release()).toThrow(/without a slot taken/);
  });
});
