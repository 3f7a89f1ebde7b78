import { readFile } from "node:fs/promises";
import net from "node:net";

/** Ports this process handed out already: never the same one twice. */
const handedOut = new Set<number>();

/**
 * A TCP port on `host` that was free a moment ago, for a server that binds it
 * next (Postgres, a service on a fixed address). Taken at random from below
 * the kernel's ephemeral range where there is room, so that between this call
 * and that bind no socket bound to port 0 and no outgoing connection, of this
 * process or another, can be given the same port; never the same port twice
 * from one process. Where the range cannot be read or leaves no room, the
 * kernel picks (bind to port 0).
 */
export async function freePort(host = "127.0.0.1"): Promise<number> {
  const range = await portsBelowEphemeral();
  if (range !== undefined) {
    for (let attempt = 0; attempt < 100; attempt++) {
      const port = range.low + Math.floor(Math.random() * (range.high - range.low));
      if (handedOut.has(port) || !(await bindable(host, port))) continue;
      handedOut.add(port);
      return port;
    }
  }
  let port = await kernelPickedPort(host);
  for (let attempt = 0; handedOut.has(port) && attempt < 100; attempt++) port = await kernelPickedPort(host);
  handedOut.add(port);
  return port;
}

/** [low, high) below net.ipv4.ip_local_port_range, or undefined when it cannot be read or leaves fewer than 2000 ports. */
async function portsBelowEphemeral(): Promise<{ low: number; high: number } | undefined> {
  const text = await readFile("/proc/sys/net/ipv4/ip_local_port_range", "utf8").catch(() => undefined);
  const ephemeralLow = Number(text?.trim().split(/\s+/)[0]);
  if (!Number.isInteger(ephemeralLow)) return undefined;
  const range = { low: Math.max(1024, ephemeralLow - 16384), high: ephemeralLow };
  return range.high - range.low >= 2000 ? range : undefined;
}

/** Whether a server can listen on host:port now (it is closed again before this resolves). */
function bindable(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once("error", () => resolve(false));
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** A port the kernel picks for a server bound to port 0. */
function kernelPickedPort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, host, () => {
      const address = server.address();
      server.close(() => {
        if (address && typeof address === "object") resolve(address.port);
        else reject(new Error("could not read the bound port"));
      });
    });
  });
}
