/**
 * A pass-through proxy in front of the stack's local LLM server that can hold every chat
 * completion for a while before forwarding it (the streamed answer itself is untouched). The local
 * server answers in milliseconds, so company_research would be over before a browser could watch
 * it; paced, each of its three LLM steps takes over a second and the viewer can be seen following a
 * run in progress.
 *
 * The delay starts at `delayMs` and can be changed while the stack runs, from any process, with
 * `PUT <origin>/__pacer/delay?ms=<n>` (setPacerDelay): the stack shared by the e2e, cli, browser and
 * fuzz layers runs unpaced, and the browser layer paces it while its tests run.
 */
import { createServer, request } from "node:http";
import type { AddressInfo } from "node:net";

export interface LlmPacer {
  /** Base URL to give the host as LOCAL_LLM_URL (ends in /v1). */
  url: string;
  /** Where setPacerDelay finds it. */
  origin: string;
  close(): Promise<void>;
}

/** `target`: the local LLM server's origin, e.g. http://127.0.0.1:8870. */
export async function startLlmPacer(target: string, delayMs: number): Promise<LlmPacer> {
  const upstreamUrl = new URL(target);
  let delay = delayMs;
  const server = createServer((req, res) => {
    if (req.method === "PUT" && req.url?.startsWith("/__pacer/delay")) {
      const ms = Number(new URL(req.url, "http://pacer").searchParams.get("ms"));
      if (!Number.isFinite(ms) || ms < 0) {
        res.writeHead(400).end("ms must be a number >= 0");
        return;
      }
      delay = ms;
      res.writeHead(204).end();
      return;
    }
    const forward = () => {
      const upstream = request(
        {
          host: upstreamUrl.hostname,
          port: upstreamUrl.port,
          method: req.method,
          path: req.url,
          headers: { ...req.headers, host: upstreamUrl.host },
        },
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
    if (delay > 0 && req.method === "POST" && req.url?.startsWith("/v1/chat/completions")) {
      // The request body waits in its buffer; pipe() starts it flowing.
      req.pause();
      setTimeout(forward, delay);
    } else {
      forward();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    origin: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Sets the delay of the pacer at `origin` (its `origin`), e.g. from a layer's global setup. */
export async function setPacerDelay(origin: string, delayMs: number): Promise<void> {
  const res = await fetch(`${origin}/__pacer/delay?ms=${delayMs}`, { method: "PUT" });
  if (res.status !== 204) throw new Error(`the LLM pacer answered ${res.status}: ${await res.text()}`);
}
