/**
 * Stream fan-out benchmark: many SSE subscribers on one run, through the whole local stack.
 *
 *   npm run bench:stream -- [--subscribers 1000] [--batches 20] [--events-per-batch 5] [--disk] [--worker-socket] [--write]
 *
 * The edge's local state lives on tmpfs unless `--disk` (bench/report.ts `benchStateRoot`).
 * `--worker-socket`: the clients and the pushes reach the Worker's own socket instead of wrangler
 * dev's proxy in front of it, which production does not have (bench/worker-socket.ts).
 *
 * 1. Latency. A real `two_steps` run is started and held in its durable pause; N clients open
 *    its history stream; then the benchmark pushes batches of history events through the same
 *    signed route the host's relay uses (event ids from 1001 up, so they never collide with the
 *    run's real ones). Latency is from the start of each push to each client's receipt of that
 *    batch (one process, one clock). Every client must see every event exactly once.
 * 2. Temporal load. Two more runs, one with no subscriber and one with N, are followed to the end;
 *    the host's count of GetWorkflowExecutionHistory calls per run must not grow with N.
 *
 * With --write the figures replace the stream section of docs/BENCHMARKS.md.
 */
import { parseArgs } from "node:util";
import { Agent, setGlobalDispatcher } from "undici";
import { HOST_PATHS } from "../src/shared/host-api.ts";
import { signRequest } from "../src/shared/signing.ts";
import { Agent as HttpAgent, get as httpGet } from "node:http";
import { startStack } from "../test/support/stack.ts";
import { benchStateRoot, currentCommit, localTraceCollector, percentile, round1, writeSection } from "./report.ts";

const { values: args } = parseArgs({
  options: {
    subscribers: { type: "string", default: "1000" },
    batches: { type: "string", default: "20" },
    "events-per-batch": { type: "string", default: "5" },
    /** Keep the edge's local state on disk rather than tmpfs. */
    disk: { type: "boolean", default: false },
    /** Subscribe and push through the Worker's own socket, past wrangler's dev proxy (bench/worker-socket.ts). */
    "worker-socket": { type: "boolean", default: false },
    write: { type: "boolean", default: false },
  },
});
const SUBSCRIBERS = Number(args.subscribers);
const BATCHES = Number(args.batches);
const PER_BATCH = Number(args["events-per-batch"]);
const FIRST_SYNTHETIC_ID = 1001;
const SECRET = `bench-${crypto.randomUUID()}`;

/** One socket per subscriber, kept open. */
const subscriberAgent = new HttpAgent({ keepAlive: true, maxSockets: SUBSCRIBERS + 50 });
setGlobalDispatcher(new Agent({ connections: SUBSCRIBERS + 50, keepAliveTimeout: 60_000, headersTimeout: 120_000, bodyTimeout: 0 }));

const state = benchStateRoot(args.disk);
const stack = await startStack({ env: { HOST_SHARED_SECRET: SECRET }, stateRoot: state.root, workerSocket: args["worker-socket"] }); // free ports (test/support/ports.ts)
const edgeUrl = stack.workerUrl ?? stack.baseUrl;
const api = (path: string, init: RequestInit = {}) =>
  fetch(`${edgeUrl}${path}`, {
    ...init,
    headers: { authorization: `Bearer ${stack.apiKey}`, "content-type": "application/json", ...(init.headers as Record<string, string>) },
  });

async function startRun(input: unknown): Promise<string> {
  const res = await api("/workflow/start", { method: "POST", body: JSON.stringify({ workflowName: "two_steps", input }) });
  if (!res.ok) throw new Error(`start failed: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { workflowId: string }).workflowId;
}

async function hostHistoryRequests(): Promise<number> {
  const headers = await signRequest(SECRET, "GET", HOST_PATHS.metrics, "");
  const res = await fetch(`http://127.0.0.1:${stack.ports.host}${HOST_PATHS.metrics}`, { headers: { ...headers } });
  return ((await res.json()) as { historyRequests: number }).historyRequests;
}

interface Subscriber {
  received: Map<number, number>; // eventId -> receipt time
  ids: number[];
  done: Promise<void>;
}

/**
 * One SSE client over a raw HTTP/1.1 socket (node:http). Each chunk is stamped the moment it
 * arrives and kept as text; the SSE and JSON parsing happen after the measurement (`parse`), so
 * that 1,000 clients in this one process do not queue behind each other's JSON.parse and the
 * figure is the server's delivery time, not the benchmark's parsing time.
 */
function subscribe(workflowId: string): Promise<Subscriber & { parse(): void }> {
  const chunks: Array<{ at: number; text: string }> = [];
  const sub = { received: new Map<number, number>(), ids: [] as number[], done: Promise.resolve() };
  return new Promise((resolveOpen, rejectOpen) => {
    const req = httpGet(
      `${edgeUrl}/workflow/${workflowId}/history/stream`,
      { agent: subscriberAgent, headers: { authorization: `Bearer ${stack.apiKey}`, accept: "text/event-stream" } },
      (res) => {
        if (res.statusCode !== 200) {
          rejectOpen(new Error(`subscribe: ${res.statusCode}`));
          res.resume();
          return;
        }
        res.setEncoding("utf8");
        sub.done = new Promise<void>((resolveDone) => {
          res.on("data", (text: string) => chunks.push({ at: performance.now(), text }));
          res.on("end", resolveDone);
          res.on("close", resolveDone);
          res.on("error", () => resolveDone());
        });
        resolveOpen({
          ...sub,
          get done() {
            return sub.done;
          },
          /** SSE-parses what arrived; an event's receipt time is the arrival of the chunk that completed it. */
          parse() {
            let buffer = "";
            let event = "";
            let data: string[] = [];
            for (const { at, text } of chunks) {
              buffer += text;
              for (let nl = buffer.indexOf("\n"); nl >= 0; nl = buffer.indexOf("\n")) {
                const line = buffer.slice(0, nl).replace(/\r$/, "");
                buffer = buffer.slice(nl + 1);
                if (line === "") {
                  if (event === "history" && data.length > 0) {
                    for (const e of JSON.parse(data.join("\n")) as Array<{ eventId: string }>) {
                      const id = Number(e.eventId);
                      sub.ids.push(id);
                      if (!sub.received.has(id)) sub.received.set(id, at);
                    }
                  }
                  event = "";
                  data = [];
                } else if (line.startsWith("event:")) event = line.slice(6).trim();
                else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
              }
            }
          },
        });
      },
    );
    req.on("error", rejectOpen);
  });
}

async function openAll(workflowId: string, n: number): Promise<Array<Subscriber & { parse(): void }>> {
  const subs: Array<Subscriber & { parse(): void }> = [];
  const CONCURRENT_OPENS = 100;
  for (let i = 0; i < n; i += CONCURRENT_OPENS) {
    subs.push(...(await Promise.all(Array.from({ length: Math.min(CONCURRENT_OPENS, n - i) }, () => subscribe(workflowId)))));
  }
  return subs;
}

try {
  // ---- 1. fan-out latency
  const workflowId = await startRun({ text: "fan out", pauseMs: 60_000 });
  const runId = ((await (await api(`/workflow/${workflowId}/status`)).json()) as { runId: string }).runId;
  console.log(`opening ${SUBSCRIBERS} subscribers on ${workflowId} (inspector ${stack.ports.inspector})`);
  const subs = await openAll(workflowId, SUBSCRIBERS);
  console.log("subscribers open; pushing in 2 s");
  await new Promise((r) => setTimeout(r, 2000));

  const pushStarted: number[] = [];
  const expected: number[] = [];
  for (let b = 0; b < BATCHES; b++) {
    const ids = Array.from({ length: PER_BATCH }, (_, i) => FIRST_SYNTHETIC_ID + b * PER_BATCH + i);
    expected.push(...ids);
    const events = ids.map((id) => ({
      sourceKey: `history:${runId}:${id}`,
      type: "history",
      at: new Date().toISOString(),
      data: {
        runId,
        event: {
          eventId: String(id),
          eventTime: new Date().toISOString(),
          eventType: "EVENT_TYPE_MARKER_RECORDED",
          attributes: { markerName: "bench" },
        },
      },
    }));
    const body = JSON.stringify({ events });
    const path = `/internal/runs/${workflowId}/events`;
    const headers = await signRequest(SECRET, "POST", path, body);
    pushStarted.push(performance.now());
    const res = await fetch(`${edgeUrl}${path}`, {
      method: "POST",
      headers: { ...headers, "content-type": "application/json" },
      body,
    });
    if (!res.ok) throw new Error(`push failed: ${res.status}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  // Let the last batch arrive.
  await new Promise((r) => setTimeout(r, 3000));
  for (const sub of subs) sub.parse();
  const latencies: number[] = [];
  let lost = 0;
  let duplicated = 0;
  for (const sub of subs) {
    const synthetic = sub.ids.filter((id) => id >= FIRST_SYNTHETIC_ID);
    duplicated += synthetic.length - new Set(synthetic).size;
    for (let b = 0; b < BATCHES; b++) {
      const lastId = FIRST_SYNTHETIC_ID + b * PER_BATCH + PER_BATCH - 1;
      const at = sub.received.get(lastId);
      if (at === undefined) continue;
      latencies.push(at - pushStarted[b]!);
    }
    lost += expected.filter((id) => !sub.received.has(id)).length;
  }
  latencies.sort((a, b) => a - b);
  // ---- 2. Temporal history requests per run vs subscribers (the fan-out run must be over first)
  const { Client, Connection } = await import("@temporalio/client");
  const client = new Client({ connection: await Connection.connect({ address: stack.temporalAddress }) });
  await client.workflow.getHandle(workflowId).terminate("benchmark over");
  await Promise.race([Promise.all(subs.map((s) => s.done)), new Promise((r) => setTimeout(r, 30_000))]);

  async function historyRequestsForRun(subscribers: number): Promise<number> {
    await new Promise((r) => setTimeout(r, 1000));
    const before = await hostHistoryRequests();
    const id = await startRun({ text: "count history requests", pauseMs: 2000 });
    const watchers = await openAll(id, subscribers);
    await client.workflow.getHandle(id).result();
    await Promise.race([Promise.all(watchers.map((w) => w.done)), new Promise((r) => setTimeout(r, 30_000))]);
    await new Promise((r) => setTimeout(r, 1000));
    return (await hostHistoryRequests()) - before;
  }
  const requestsAlone = await historyRequestsForRun(0);
  const requestsWithSubscribers = await historyRequestsForRun(SUBSCRIBERS);
  await client.connection.close();

  const figures = {
    subscribers: SUBSCRIBERS,
    batches: BATCHES,
    eventsPerBatch: PER_BATCH,
    deliveries: latencies.length,
    p50Ms: round1(percentile(latencies, 50)),
    p99Ms: round1(percentile(latencies, 99)),
    maxMs: round1(latencies.at(-1) ?? NaN),
    lost,
    duplicated,
    historyRequestsPerRunWithoutSubscribers: requestsAlone,
    historyRequestsPerRunWith: requestsWithSubscribers,
  };
  console.log(JSON.stringify(figures, null, 2));

  if (args.write) {
    writeSection("stream-fanout", [
      "## Stream fan-out (issue: live progress)",
      "",
      "```sh",
      `${localTraceCollector().commandPrefix}npm run bench:stream -- --subscribers ${SUBSCRIBERS} --batches ${BATCHES} --events-per-batch ${PER_BATCH}${args.disk ? " --disk" : ""}${args["worker-socket"] ? " --worker-socket" : ""} --write`,
      "```",
      "",
      `Measured ${new Date().toISOString().slice(0, 10)} on the 2-core development machine, whole stack local (wrangler dev, Temporal dev server, Node host); the subscribers run in the benchmark's own Node process on the same two cores, each on its own HTTP/1.1 socket (node:http); a chunk is stamped when it arrives and parsed after the measurement, so the figure is the server's delivery time (before 2026-11-30 the clients parsed each message with fetch streams as it came, and 1,000 of them queued behind each other's parsing in this one process). ${args["worker-socket"] ? "The edge is wrangler dev; the clients and the pushes reached the Worker's own socket (`--worker-socket`), not wrangler's local proxy in front of it (another workerd process), which production does not have." : "The edge is wrangler dev, so every byte also passes its local proxy (another workerd process)."} Code ${currentCommit()}; the edge's local state (D1, the Durable Objects' SQLite files) ${state.storage === "memory" ? "on tmpfs, as Temporal's dev server keeps its own in memory" : "on disk (`--disk`)"}; wrangler dev's local trace collector ${localTraceCollector().state === "on" ? "on (`X_LOCAL_OBSERVABILITY=true`, as before 2026-12-01)" : "off, as `npm run dev` runs it (docs/configuration.md)"}.`,
      "",
      "| figure | value |",
      "|---|---|",
      `| subscribers on one run | ${SUBSCRIBERS} |`,
      `| batches pushed (events each) | ${BATCHES} (${PER_BATCH}) |`,
      `| batch deliveries measured | ${figures.deliveries} |`,
      `| latency host push → client, p50 | ${figures.p50Ms} ms |`,
      `| latency host push → client, p99 | ${figures.p99Ms} ms |`,
      `| latency, max | ${figures.maxMs} ms |`,
      `| events lost | ${lost} |`,
      `| events duplicated | ${duplicated} |`,
      `| Temporal history requests for a run with 0 subscribers | ${requestsAlone} |`,
      `| Temporal history requests for a run with ${SUBSCRIBERS} subscribers | ${requestsWithSubscribers} |`,
    ]);
  }
  if (lost > 0 || duplicated > 0) process.exitCode = 1;
} finally {
  await stack.stop();
}
