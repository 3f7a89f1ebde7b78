import { Code } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { ComputeStateError, ComputeStateMachine } from "../src/computectl/index.js";

describe("compute state machine", () => {
  it("follows Neon's path from empty to terminated", () => {
    const m = new ComputeStateMachine();
    const seen: string[] = [];
    m.subscribe((s) => seen.push(s.state));
    for (const to of ["configuration_pending", "init", "running", "configuration", "running", "termination_pending_fast", "terminated"] as const) {
      m.move(to, "test");
    }
    expect(seen).toEqual(["configuration_pending", "init", "running", "configuration", "running", "termination_pending_fast", "terminated"]);
  });

  it("refuses a terminate before running with FAILED_PRECONDITION", () => {
    const m = new ComputeStateMachine();
    m.move("configuration_pending", "wait");
    const attempt = () => m.move("termination_pending_fast", "terminate");
    expect(attempt).toThrow(ComputeStateError);
    try {
      attempt();
    } catch (err) {
      expect((err as ComputeStateError).code).toBe(Code.FailedPrecondition);
      expect((err as ComputeStateError).rawMessage).toBe("cannot terminate a compute in state configuration_pending");
    }
  });

  it("fails from any state but terminated, keeping the reason", () => {
    const m = new ComputeStateMachine();
    m.move("init", "start");
    m.fail("postgres exited");
    expect(m.current).toMatchObject({ state: "failed", error: "postgres exited" });
    m.fail("a later, less useful reason");
    expect(m.current.error).toBe("postgres exited");
    expect(() => m.move("running", "start")).toThrow(/cannot start a compute in state failed/);
  });

  it("keeps a start-up warning while running and clears it on the next start", () => {
    const m = new ComputeStateMachine();
    m.move("init", "start");
    m.warn("endpoint storage unavailable");
    m.move("running", "start");
    expect(m.current.error).toBe("endpoint storage unavailable");
  });

  it("resolves waitFor on the matching change", async () => {
    const m = new ComputeStateMachine();
    const running = m.waitFor((s) => s.state === "running");
    m.move("init", "start");
    m.move("running", "start");
    await expect(running).resolves.toMatchObject({ state: "running" });
  });
});
