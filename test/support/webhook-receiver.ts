/**
 * A scripted webhook receiver on 127.0.0.1 (random port) for tests: `POST /hook/<name>?plan=500,500,200`
 * answers each request to <name> with the next status of its plan (then 200); a plan step
 * `hang:<ms>` holds the answer that long, then answers 200. `GET /log/<name>` returns what <name>
 * received: headers, raw body and the status it was answered with.
 *
 * It is also the tests' DNS-over-HTTPS resolver (the JSON API, as Cloudflare's answers it), since
 * the machine has no internet: `GET /dns-query?name=&type=A|AAAA` answers from a zone that tests
 * set with `PUT /dns/<name>` (a TestDnsRecords body). Names not set: any name under example.com has
 * one public address, anything else is NXDOMAIN.
 *
 * And it serves scripted documents: `PUT /file/<name>` with `{status, body}`, then `GET /file/<name>`
 * answers with them (the JWT key tests' JWKS endpoint).
 */
import { createServer, type IncomingMessage, type ServerResponse, type Server } from "node:http";

/** What the test resolver answers for a name; `rcode` (a DNS response code) and `httpStatus` script failures. */
export interface TestDnsRecords {
  A?: string[];
  AAAA?: string[];
  CNAME?: string;
  rcode?: number;
  httpStatus?: number;
  /** Only lookups of this type fail (answered 503): the other is answered from the records. */
  failing?: "A" | "AAAA";
}

/** A public address (outside every refused range) for the example.com names tests register. */
export const EXAMPLE_COM_ADDRESS = "93.184.215.14";
const DNS_TYPES = { A: 1, AAAA: 28, CNAME: 5 } as const;

function dnsAnswer(zone: Map<string, TestDnsRecords>, url: URL, res: ServerResponse) {
  const type = url.searchParams.get("type") === "AAAA" ? "AAAA" : "A";
  let name = (url.searchParams.get("name") ?? "").toLowerCase().replace(/\.+$/, "");
  const answer: { name: string; type: number; TTL: number; data: string }[] = [];
  for (let hops = 0; hops < 8; hops++) {
    const records = zone.get(name) ?? (/(^|\.)example\.com$/.test(name) ? { A: [EXAMPLE_COM_ADDRESS] } : undefined);
    if (records?.httpStatus) return void res.writeHead(records.httpStatus).end();
    if (records?.failing === type) return void res.writeHead(503).end();
    if (records?.rcode !== undefined || !records) {
      const status = records?.rcode ?? (answer.length > 0 ? 0 : 3);
      return void res.writeHead(200, { "content-type": "application/dns-json" }).end(JSON.stringify({ Status: status, Answer: answer }));
    }
    if (records.CNAME) {
      answer.push({ name, type: DNS_TYPES.CNAME, TTL: 60, data: `${records.CNAME}.` });
      name = records.CNAME;
      continue;
    }
    for (const data of records[type] ?? []) answer.push({ name, type: DNS_TYPES[type], TTL: 60, data });
    break;
  }
  res.writeHead(200, { "content-type": "application/dns-json" }).end(JSON.stringify({ Status: 0, Answer: answer }));
}

function setDnsRecords(zone: Map<string, TestDnsRecords>, name: string, req: IncomingMessage, res: ServerResponse) {
  const chunks: Buffer[] = [];
  req.on("data", (c: Buffer) => chunks.push(c));
  req.on("end", () => {
    zone.set(decodeURIComponent(name).toLowerCase(), JSON.parse(Buffer.concat(chunks).toString("utf8")) as TestDnsRecords);
    res.writeHead(204).end();
  });
}

function serveFile(files: Map<string, { status: number; body: string }>, name: string, req: IncomingMessage, res: ServerResponse) {
  if (req.method === "GET") {
    const file = files.get(name);
    return void res.writeHead(file?.status ?? 404, { "content-type": "application/json" }).end(file?.body ?? "");
  }
  const chunks: Buffer[] = [];
  req.on("data", (c: Buffer) => chunks.push(c));
  req.on("end", () => {
    files.set(name, JSON.parse(Buffer.concat(chunks).toString("utf8")) as { status: number; body: string });
    res.writeHead(204).end();
  });
}

export interface ReceivedWebhook {
  headers: Record<string, string>;
  body: string;
  status: number;
  at: number;
}

export async function startWebhookReceiver(): Promise<{ url: string; server: Server; close: () => Promise<void> }> {
  const logs = new Map<string, ReceivedWebhook[]>();
  const zone = new Map<string, TestDnsRecords>();
  const files = new Map<string, { status: number; body: string }>();
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://receiver");
    const [, kind, name = ""] = url.pathname.split("/");
    if (req.method === "GET" && kind === "dns-query") return dnsAnswer(zone, url, res);
    if (req.method === "PUT" && kind === "dns") return setDnsRecords(zone, name, req, res);
    // A scripted document (a JWKS in the JWT key tests): PUT stores {status, body}, GET answers with it.
    if (kind === "file" && (req.method === "PUT" || req.method === "GET")) return serveFile(files, name, req, res);
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
