import path from "node:path";
import { pathToFileURL } from "node:url";
import { execa } from "execa";
import { describe, expect, it } from "vitest";
import { createLogger } from "../src/server/index.js";

/** A logger whose JSON lines land in `lines`. */
function capturedLogger(): { logger: ReturnType<typeof createLogger>; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({ service: "test", destination: { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) } });
  return { logger, lines };
}

const dist = path.resolve(import.meta.dirname, "../dist");

describe("the binaries' logger", () => {
  it("redacts authorization headers, passwords and SCRAM verifiers wherever a log call puts them", () => {
    const { logger, lines } = capturedLogger();
    logger.info({ headers: { authorization: "Bearer eyJ.secret" }, password: "pw1", role: { name: "app", encryptedPassword: "SCRAM-SHA-256$x" } }, "call");
    expect(lines[0]).toMatchObject({
      headers: { authorization: "[redacted]" },
      password: "[redacted]",
      role: { name: "app", encryptedPassword: "[redacted]" },
    });
  });

  it("writes a process warning (the AWS SDK's Node-version notice) as one JSON line on stdout, nothing on stderr", async () => {
    const script = `
      const { createLogger } = await import(${JSON.stringify(pathToFileURL(path.join(dist, "src/server/index.js")).href)});
      createLogger({ service: "test" });
      process.emitWarning("NodeVersionSupportWarning: The AWS SDK for JavaScript (v3)\\nwill require node >=22.");`;
    const { stdout, stderr } = await execa(process.execPath, ["--input-type=module", "-e", script]);
    expect(stderr).toBe("");
    expect(stdout.split("\n").map((line) => JSON.parse(line) as unknown)).toEqual([
      expect.objectContaining({ level: 40, name: "test", msg: "NodeVersionSupportWarning: The AWS SDK for JavaScript (v3)\nwill require node >=22." }),
    ]);
  });
});
