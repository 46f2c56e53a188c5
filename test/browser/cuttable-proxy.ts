/**
 * A TCP proxy in front of the edge that a test can cut: `cut(ms)` drops every open connection
 * (the page's event stream included) and refuses new ones for `ms`, as a network outage would.
 * Chromium's offline emulation (`context.setOffline`) does not end a stream that is already open,
 * so the test needs this to drop the viewer's connection mid-run.
 */
import { createServer, connect, type Socket } from "node:net";
import type { AddressInfo } from "node:net";

export interface CuttableProxy {
  /** http://127.0.0.1:<port>, forwarding to the target. */
  origin: string;
  /** Drops every connection and refuses new ones for `ms`; resolves when the outage is over. */
  cut(ms: number): Promise<void>;
  /** Connections dropped by cuts, and connections refused during them. */
  readonly stats: { dropped: number; refused: number };
  close(): Promise<void>;
}

export async function startCuttableProxy(targetPort: number): Promise<CuttableProxy> {
  /** Open connections: the client's socket and its upstream. */
  const open = new Map<Socket, Socket>();
  const stats = { dropped: 0, refused: 0 };
  let down = false;
  const server = createServer((client) => {
    if (down) {
      stats.refused++;
      client.destroy();
      return;
    }
    const upstream = connect({ host: "127.0.0.1", port: targetPort });
    open.set(client, upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      open.delete(client);
    };
    client.on("error", drop).on("close", drop);
    upstream.on("error", drop).on("close", drop);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    stats,
    async cut(ms) {
      down = true;
      stats.dropped += open.size;
      // An abrupt reset, as when the network path disappears, not an orderly end of the response.
      for (const [client, upstream] of open) {
        client.resetAndDestroy();
        upstream.destroy();
      }
      open.clear();
      await new Promise((r) => setTimeout(r, ms));
      down = false;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const [client, upstream] of open) {
          client.destroy();
          upstream.destroy();
        }
        server.close(() => resolve());
      }),
  };
}
