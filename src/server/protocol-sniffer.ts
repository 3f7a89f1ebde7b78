import type { Socket } from "node:net";

const preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/**
 * Reads the first bytes of a connection and tells whether it opens with the
 * HTTP/2 connection preface (h2c with prior knowledge) or not (HTTP/1.1).
 * The bytes read are put back into the socket before `onDecided` runs.
 */
export function sniffProtocol(socket: Socket, onDecided: (protocol: "h2" | "http1") => void): void {
  const chunks: Buffer[] = [];
  let length = 0;
  const decide = (protocol: "h2" | "http1"): void => {
    socket.removeListener("data", onData);
    socket.removeListener("end", onEnd);
    socket.pause();
    socket.unshift(Buffer.concat(chunks, length));
    onDecided(protocol);
  };
  const onData = (chunk: Buffer): void => {
    chunks.push(chunk);
    length += chunk.length;
    const head = Buffer.concat(chunks, length);
    const n = Math.min(head.length, preface.length);
    if (!head.subarray(0, n).equals(preface.subarray(0, n))) decide("http1");
    else if (n === preface.length) decide("h2");
  };
  const onEnd = (): void => decide("http1");
  socket.on("data", onData);
  socket.once("end", onEnd);
}
