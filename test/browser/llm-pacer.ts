/**
 * A pass-through proxy in front of the stack's local LLM server that holds every chat completion
 * for a while before forwarding it (the streamed answer itself is untouched). The local server
 * answers in milliseconds, so company_research would be over before a browser could watch it;
 * paced, each of its three LLM steps takes over a second and the viewer can be seen following a
 * run in progress.
 */
import { createServer, request } from "node:http";
import type { AddressInfo } from "node:net";

export interface LlmPacer {
  /** Base URL to give the host as LOCAL_LLM_URL (ends in /v1). */
  url: string;
  close(): Promise<void>;
}

/** `target`: the local LLM server's origin, e.g. http://127.0.0.1:8870. */
export async function startLlmPacer(target: string, delayMs: number): Promise<LlmPacer> {
  const upstreamUrl = new URL(target);
  const server = createServer((req, res) => {
    const forward = () => {
      const upstream = request(
        { host: upstreamUrl.hostname, port: upstreamUrl.port, method: req.method, path: req.url, headers: { ...req.headers, host: upstreamUrl.host } },
        (up) => {
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
        },
      );
      upstream.on("error", (err) => {
        if (!res.headersSent) res.writeHead(502);
        res.end(String(err));
      });
      req.pipe(upstream);
    };
    if (req.method === "POST" && req.url?.startsWith("/v1/chat/completions")) {
      // The request body waits in its buffer; pipe() starts it flowing.
      req.pause();
      setTimeout(forward, delayMs);
    } else {
      forward();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
