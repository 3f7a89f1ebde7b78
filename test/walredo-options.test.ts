import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { compileWalRedoOptions, WalRedoOptionsError } from "../src/walredo/index.js";

const logger = pino({ level: "silent" });

describe("WalRedo options", () => {
  it("refuses a Postgres major whose WAL record format validation does not know", () => {
    expect(() => compileWalRedoOptions({ logger, pgMajors: [14, 15] })).toThrow(WalRedoOptionsError);
    expect(() => compileWalRedoOptions({ logger, pgMajors: [14, 15] })).toThrow(/^pgMajors: \[14,15\] must list Postgres major versions >= 15/);
  });

  it("refuses a record limit above what a walredo process accepts", () => {
    expect(() => compileWalRedoOptions({ logger, maxRecordBytes: 64 * 1024 * 1024 + 1 })).toThrow(/^maxRecordBytes: 67108865 exceeds 67108864, the largest record a walredo process accepts/);
  });

  it("refuses a queue timeout that is not a positive integer, naming its flag", () => {
    expect(() => compileWalRedoOptions({ logger, queueTimeoutMs: 0 })).toThrow(/^queueTimeoutMs \(--queue-timeout-ms\): 0 is not a positive integer/);
  });
});
