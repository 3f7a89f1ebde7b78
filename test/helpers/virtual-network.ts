import { execFileSync } from "node:child_process";
import { randomBytes, randomInt } from "node:crypto";
import { execa } from "execa";

/** One host on a VirtualNetwork: a network namespace with one address on the shared bridge. */
export interface VirtualHost {
  readonly name: string;
  readonly netns: string;
  readonly address: string;
  /** Prefix that runs a command on this host: `ip netns exec <netns>` (the command replaces ip, keeping its pid). */
  readonly launcher: readonly string[];
  /** Link down: nothing reaches the host and the host reaches nothing, as when its cable is pulled. */
  disconnect(): Promise<void>;
  reconnect(): Promise<void>;
}

/**
 * Several hosts on one machine: a network namespace per host, each joined to
 * one bridge by a veth pair; this process is a host too (the bridge's own
 * address). Names and the /24 subnet are unique per run; remove() deletes
 * everything, and so does this process's exit if remove() never ran.
 * Needs root and iproute2.
 */
export class VirtualNetwork {
  readonly #id = randomBytes(3).toString("hex");
  readonly #subnet = `10.${randomInt(200, 250)}.${randomInt(0, 256)}`;
  readonly #hosts: VirtualHost[] = [];
  /** The bridge's end of each host's veth pair. */
  readonly #links: string[] = [];
  readonly #bridge = `pgm${this.#id}br`;
  readonly #removeAtExit = (): void => this.#removeSync();
  #bridgeUp = false;

  /** This process's address on the network (the bridge's). */
  get address(): string {
    return `${this.#subnet}.1`;
  }

  get hosts(): readonly VirtualHost[] {
    return this.#hosts;
  }

  async addHost(name: string): Promise<VirtualHost> {
    if (!this.#bridgeUp) {
      process.once("exit", this.#removeAtExit);
      this.#bridgeUp = true;
      await ip("link", "add", this.#bridge, "type", "bridge");
      await ip("addr", "add", `${this.address}/24`, "dev", this.#bridge);
      await ip("link", "set", this.#bridge, "up");
    }
    const index = this.#hosts.length + 1;
    const netns = `pgm-${this.#id}-${name}`;
    const link = `pgm${this.#id}h${index}`; // the bridge's end; the host's end is its eth0
    const address = `${this.#subnet}.${10 + index}`;
    const host: VirtualHost = {
      name,
      netns,
      address,
      launcher: ["ip", "netns", "exec", netns],
      disconnect: () => ip("link", "set", link, "down"),
      reconnect: () => ip("link", "set", link, "up"),
    };
    await ip("netns", "add", netns);
    this.#hosts.push(host);
    await ip("link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", netns);
    this.#links.push(link);
    await ip("link", "set", link, "master", this.#bridge, "up");
    await ip("-n", netns, "addr", "add", `${address}/24`, "dev", "eth0");
    await ip("-n", netns, "link", "set", "eth0", "up");
    await ip("-n", netns, "link", "set", "lo", "up");
    return host;
  }

  /**
   * Deletes the namespaces, the veth pairs and the bridge. A namespace lives on
   * while a process is still in it: the veth pairs are deleted by name, so the
   * network is gone even then.
   */
  async remove(): Promise<void> {
    process.removeListener("exit", this.#removeAtExit);
    for (const host of this.#hosts.splice(0)) await ip("netns", "delete", host.netns).catch(() => undefined);
    for (const link of this.#links.splice(0)) await ip("link", "delete", link).catch(() => undefined);
    if (this.#bridgeUp) await ip("link", "delete", this.#bridge).catch(() => undefined);
    this.#bridgeUp = false;
  }

  #removeSync(): void {
    const commands = [
      ...this.#hosts.map((host) => ["netns", "delete", host.netns]),
      ...this.#links.map((link) => ["link", "delete", link]),
      ["link", "delete", this.#bridge],
    ];
    for (const args of commands) {
      try {
        execFileSync("ip", args, { stdio: "ignore" });
      } catch {
        // already gone
      }
    }
  }
}

async function ip(...args: string[]): Promise<void> {
  await execa("ip", args);
}
