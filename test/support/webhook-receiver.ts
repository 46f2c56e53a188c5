/**
 * A scripted webhook receiver on 127.0.0.1 (random port) for tests: `POST /hook/<name>?plan=500,500,200`
 * answers each request to <name> with the next status of its plan (then 200); a plan step
 * `hang:<ms>` holds the answer that long, then answers 200. `GET /log/<name>` returns what <name>
 * received: headers, raw body and the status it was answered with.
 */
import { createServer, type Server } from "node:http";

export interface ReceivedWebhook {
  headers: Record<string, string>;
  body: string;
  status: number;
  at: number;
}

export async function startWebhookReceiver(): Promise<{ url: string; server: Server; close: () => Promise<void> }> {
  const logs = new Map<string, ReceivedWebhook[]>();
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://receiver");
    const [, kind, name = ""] = url.pathname.split("/");
    if (req.method === "GET" && kind === "log") {
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(logs.get(name) ?? []));
      return;
    }
    if (req.method !== "POST" || kind !== "hook") {
      res.writeHead(404).end();
      return;
    }
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const log = logs.get(name) ?? [];
      logs.set(name, log);
      const step = (url.searchParams.get("plan") ?? "").split(",").filter(Boolean)[log.length] ?? "200";
      const hang = /^hang:(\d+)$/.exec(step);
      const status = hang ? 200 : Number(step);
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === "string") headers[k] = v;
      log.push({ headers, body: Buffer.concat(chunks).toString("utf8"), status, at: Date.now() });
      const answer = () => {
        if (!res.destroyed) res.writeHead(status, { "content-type": "text/plain" }).end(status < 300 ? "ok" : "no");
      };
      if (hang) setTimeout(answer, Number(hang[1])).unref();
      else answer();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  server.unref();
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}`, server, close: () => new Promise((resolve) => server.close(() => resolve())) };
}
