/**
 * Free TCP ports for the test stacks, chosen at run time so tests never collide with a
 * developer's `npm run dev` (8787, 8788, 8790, Temporal 7233/7243/7244) or with each other.
 *
 * The OS picks each port (listen on port 0) and it is released at once for the child process that
 * will listen on it. `freePorts(n)` holds all n listeners open until every port is known, so the n
 * ports are distinct.
 */
import { createServer, type Server } from "node:net";

function listen(): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve(server));
  });
}

export async function freePorts(n: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let i = 0; i < n; i++) servers.push(await listen());
    return servers.map((s) => (s.address() as { port: number }).port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  }
}

export async function freePort(): Promise<number> {
  return (await freePorts(1))[0]!;
}
