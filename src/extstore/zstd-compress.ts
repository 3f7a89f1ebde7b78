import { spawn } from "node:child_process";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";

/**
 * Compresses a byte stream with Debian's `zstd` binary (Node 20's zlib has no
 * zstd), streaming both ways: `source` feeds the process's stdin with
 * backpressure and its stdout is yielded as it comes. The process is killed
 * when the consumer stops early or `signal` aborts; a non-zero exit is an
 * error naming it.
 */
export async function* zstdCompress(source: AsyncIterable<Uint8Array>, signal: AbortSignal): AsyncGenerator<Buffer> {
  const child = spawn("zstd", ["-q", "-c", "-3"], { stdio: ["pipe", "pipe", "pipe"], signal });
  const stderr: Buffer[] = [];
  child.stderr.on("data", (chunk: Buffer) => stderr.length < 16 && stderr.push(chunk));
  const exited = new Promise<number | null>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code) => resolve(code));
  });
  const fed = pipeline(Readable.from(source), child.stdin);
  fed.catch(() => child.kill("SIGKILL"));
  let done = false;
  try {
    for await (const chunk of child.stdout) yield chunk as Buffer;
    await fed;
    const code = await exited;
    if (code !== 0) throw new Error(`zstd exited with code ${code}: ${Buffer.concat(stderr).toString().trim() || "no message"}`);
    done = true;
  } finally {
    if (!done) {
      child.kill("SIGKILL");
      await exited.catch(() => undefined);
      await fed.catch(() => undefined);
    }
  }
}
