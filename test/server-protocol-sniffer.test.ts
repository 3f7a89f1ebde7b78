import type { Socket } from "node:net";
import { PassThrough } from "node:stream";
import { setImmediate as nextTurn } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { sniffProtocol } from "../src/server/protocol-sniffer.js";

const preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/** Feeds `pieces` one 'data' event at a time; returns the decision (if any) and the bytes readable afterwards. */
async function sniff(...pieces: string[]) {
  const socket = new PassThrough();
  let decided: string | undefined;
  sniffProtocol(socket as unknown as Socket, (protocol) => (decided = protocol));
  const decisions: (string | undefined)[] = [];
  for (const piece of pieces) {
    socket.write(piece);
    await nextTurn();
    decisions.push(decided);
  }
  return { decisions, replay: decided === undefined ? "" : String(socket.read() ?? "") };
}

describe("protocol sniffer", () => {
  it("hands a connection that opens with the HTTP/2 preface to HTTP/2, bytes intact", async () => {
    const { decisions, replay } = await sniff(preface + "\x00\x00\x00\x04");
    expect(decisions).toEqual(["h2"]);
    expect(replay).toBe(preface + "\x00\x00\x00\x04");
  });

  it("waits for the whole preface when it arrives in pieces", async () => {
    const { decisions, replay } = await sniff("PRI * HTTP", "/2.0\r\n\r\nSM\r", "\n\r\n");
    expect(decisions).toEqual([undefined, undefined, "h2"]);
    expect(replay).toBe(preface);
  });

  it("hands anything else to HTTP/1.1 as soon as it differs from the preface", async () => {
    const { decisions, replay } = await sniff("P", "OST /x HTTP/1.1\r\n");
    expect(decisions).toEqual([undefined, "http1"]);
    expect(replay).toBe("POST /x HTTP/1.1\r\n");
  });

  it("decides HTTP/1.1 on the first byte of a GET", async () => {
    expect((await sniff("G")).decisions).toEqual(["http1"]);
  });
});
