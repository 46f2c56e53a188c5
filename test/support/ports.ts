/**
 * Free TCP ports for the test stacks, chosen at run time so tests never collide with a
 * developer's `npm run dev` (8787, 8788, 8790, Temporal 7233/7243/7244) or with each other.
 *
 * Ports are drawn at random from below the OS's ephemeral range and checked by listening on them,
 * then released for the child process that will listen on it. Not the OS's own pick (listen on
 * port 0): that is an ephemeral port, which the OS may hand to any other socket (workerd's, a
 * client's) in the seconds before the child binds it, and a stack then failed to start with
 * EADDRINUSE. `freePorts(n)` holds all n listeners open until every port is known, so the n ports
 * are distinct.
 */
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:net";

/** The lowest port drawn: above the well-known and registered services a machine usually runs. */
const LOWEST_PORT = 15_000;
/** Linux's default first ephemeral port, where /proc does not say. */
const DEFAULT_EPHEMERAL_START = 32_768;
const MAX_TRIES = 200;

/** The first port of the OS's ephemeral range (Linux: /proc/sys/net/ipv4/ip_local_port_range). */
function ephemeralStart(): number {
  try {
    const start = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]);
    return Number.isInteger(start) && start > LOWEST_PORT + 1000 ? start : DEFAULT_EPHEMERAL_START;
  } catch {
    return DEFAULT_EPHEMERAL_START;
  }
}

function listen(port: number): Promise<Server | null> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once("error", () => resolve(null));
    server.listen(port, "127.0.0.1", () => resolve(server));
  });
}

export async function freePorts(n: number): Promise<number[]> {
  const highest = ephemeralStart() - 1;
  const servers: Server[] = [];
  try {
    for (let tries = 0; servers.length < n; tries++) {
      if (tries >= MAX_TRIES) throw new Error(`no ${n} free ports found in ${LOWEST_PORT}-${highest}`);
      const port = LOWEST_PORT + Math.floor(Math.random() * (highest - LOWEST_PORT + 1));
      const server = await listen(port);
      if (server) servers.push(server);
    }
    return servers.map((s) => (s.address() as { port: number }).port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  }
}

export async function freePort(): Promise<number> {
  return (await freePorts(1))[0]!;
}
