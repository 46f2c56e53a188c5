/**
 * Where the edge Worker's CPU goes while 16 clients start `hello` runs as fast as they can: a V8
 * CPU profile of the Worker's isolate (the Worker, the RunStream and RateLimiter Durable Objects;
 * not local D1, which miniflare runs in an isolate of its own) taken through wrangler dev's
 * inspector, with the cores each process of the stack used over the same seconds. Prints the
 * functions with the most self time and, among our own files (mapped back through the bundle's
 * source map), the most inclusive time; writes the profile for Chrome DevTools.
 *
 * A diagnostic, not a target: the figures of record are `npm run bench:start`'s. The profiler
 * itself costs the machine about a tenth of a core, so starts/s here are a little lower.
 *
 *   npm run bench:profile -- [--seconds 15] [--concurrency 16] [--interval-us 250] [--top 25] [--out FILE]
 */
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { SourceMap } from "node:module";
import { relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { startStack } from "../test/support/stack.ts";
import { withCpuSplit } from "./process-cpu.ts";
import { benchStateRoot, round1 } from "./report.ts";

const { values: args } = parseArgs({
  options: {
    seconds: { type: "string", default: "15" },
    concurrency: { type: "string", default: "16" },
    "interval-us": { type: "string", default: "250" },
    top: { type: "string", default: "25" },
    out: { type: "string", default: "workerd.cpuprofile" },
  },
});
const SECONDS = Number(args.seconds);
const CONCURRENCY = Number(args.concurrency);
const TOP = Number(args.top);
/** Starts before the profile begins: the isolate's code compiled, its caches filled. */
const WARMUP_SECONDS = 3;
const repoRoot = resolve(fileURLToPath(import.meta.url), "../..");

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  hitCount?: number;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
}

/** One Chrome DevTools Protocol session over the inspector's WebSocket. */
async function inspector(port: number) {
  const targets = (await (await fetch(`http://127.0.0.1:${port}/json`)).json()) as Array<{ webSocketDebuggerUrl: string }>;
  // wrangler's inspector proxy refuses a client that sends a User-Agent without an Origin (as Node's WebSocket does).
  const ws = new WebSocket(targets[0]!.webSocketDebuggerUrl, { headers: { origin: "http://localhost" } } as never);
  await new Promise((ok, fail) => {
    ws.onopen = ok;
    ws.onerror = fail;
  });
  let nextId = 1;
  const pending = new Map<number, (message: { result?: unknown; error?: unknown }) => void>();
  ws.onmessage = (e) => {
    const message = JSON.parse(String(e.data)) as { id?: number; result?: unknown; error?: unknown };
    if (message.id !== undefined) pending.get(message.id)?.(message);
  };
  return {
    async send<T>(method: string, params: object = {}): Promise<T> {
      const id = nextId++;
      const answer = new Promise<{ result?: unknown; error?: unknown }>((r) => pending.set(id, r));
      ws.send(JSON.stringify({ id, method, params }));
      const { result, error } = await answer;
      if (error) throw new Error(`${method}: ${JSON.stringify(error)}`);
      return result as T;
    },
    close: () => ws.close(),
  };
}

/**
 * The bundle wrangler dev built for this stack: the profile names it only `index.js`. wrangler
 * writes it to `.wrangler/tmp/dev-*` in the repository; ours is the first written after `since`.
 */
function bundleBuiltSince(since: number): string | null {
  const dir = resolve(repoRoot, ".wrangler/tmp");
  if (!existsSync(dir)) return null;
  const built = readdirSync(dir)
    .filter((name) => name.startsWith("dev-") && existsSync(resolve(dir, name, "index.js.map")))
    .map((name) => ({ file: resolve(dir, name, "index.js"), at: statSync(resolve(dir, name, "index.js.map")).mtimeMs }))
    .filter((b) => b.at >= since)
    .sort((a, b) => a.at - b.at);
  return built[0]?.file ?? null;
}

/** Maps a position in the bundle back to our source (`src/…:line`) through its source map. */
function sourceMapper(bundle: string | null) {
  const map = bundle ? new SourceMap(JSON.parse(readFileSync(`${bundle}.map`, "utf8"))) : null;
  return (frame: CallFrame): string | null => {
    if (!map || frame.url !== "index.js") return null;
    const entry = map.findEntry(frame.lineNumber, frame.columnNumber);
    if (!entry || !("originalSource" in entry)) return null;
    const source = entry.originalSource.replace(/^file:\/\//, "");
    return `${relative(repoRoot, resolve(bundle!, "..", source))}:${entry.originalLine + 1}`;
  };
}

/** Self and inclusive sample counts per function (a sample counts once per function on its stack). */
function summarize(profile: CpuProfile, bundle: string | null) {
  const where = sourceMapper(bundle);
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const nameOf = new Map<number, string>();
  for (const node of profile.nodes) {
    const { functionName, url, lineNumber } = node.callFrame;
    const mapped = where(node.callFrame);
    nameOf.set(node.id, `${functionName || "(anonymous)"} ${mapped ?? (url ? `${url.split("/").pop()}:${lineNumber + 1}` : "")}`.trim());
  }
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  const walk = (id: number, onStack: Set<string>): number => {
    const node = byId.get(id)!;
    const name = nameOf.get(id)!;
    const hits = node.hitCount ?? 0;
    self.set(name, (self.get(name) ?? 0) + hits);
    const entered = !onStack.has(name);
    if (entered) onStack.add(name);
    const subtree: number = hits + (node.children ?? []).reduce((sum, child) => sum + walk(child, onStack), 0);
    if (entered) {
      inclusive.set(name, (inclusive.get(name) ?? 0) + subtree);
      onStack.delete(name);
    }
    return subtree;
  };
  const total = walk(profile.nodes[0]!.id, new Set());
  return { self, inclusive, total };
}

const state = benchStateRoot(false);
const stackStartedAt = Date.now();
const stack = await startStack({ stateRoot: state.root, workerSocket: true });
try {
  const edgeUrl = stack.workerUrl ?? stack.baseUrl;
  const start = async () => {
    const res = await fetch(`${edgeUrl}/workflow/start`, {
      method: "POST",
      headers: { authorization: `Bearer ${stack.apiKey}`, "content-type": "application/json" },
      body: JSON.stringify({ workflowName: "hello", input: { name: "profile" } }),
    });
    await res.arrayBuffer();
    return res.status === 200;
  };
  const load = async (seconds: number) => {
    let started = 0;
    let failed = 0;
    const deadline = performance.now() + seconds * 1000;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (performance.now() < deadline) {
          if (await start().catch(() => false)) started++;
          else failed++;
        }
      }),
    );
    return { started, failed };
  };

  const session = await inspector(stack.ports.inspector);
  await session.send("Profiler.enable");
  await session.send("Profiler.setSamplingInterval", { interval: Number(args["interval-us"]) });
  await load(WARMUP_SECONDS);
  await session.send("Profiler.start");
  const t0 = performance.now();
  const { result: counts, cpu } = await withCpuSplit(stack.pid, () => load(SECONDS));
  const elapsed = (performance.now() - t0) / 1000;
  const { profile } = await session.send<{ profile: CpuProfile }>("Profiler.stop");
  session.close();
  writeFileSync(args.out, JSON.stringify(profile));

  const bundle = bundleBuiltSince(stackStartedAt - 1000);
  if (!bundle) console.warn("the Worker's bundle was not found under .wrangler/tmp: functions are named by bundle line");
  const { self, inclusive, total } = summarize(profile, bundle);
  const perSecond = counts.started / elapsed;
  const pct = (n: number) => `${round1((100 * n) / total)}%`;
  const ours = (name: string) => / (src|durable-objects)\//.test(name);
  const top = (m: Map<string, number>, keep: (name: string) => boolean) =>
    [...m]
      .filter(([name]) => keep(name))
      .sort((a, b) => b[1] - a[1])
      .slice(0, TOP);
  console.log(
    `${counts.started} starts in ${round1(elapsed)} s (${round1(perSecond)}/s, ${counts.failed} failed), ${CONCURRENCY} clients; ` +
      `cores: workerd ${cpu.workerd}, Temporal ${cpu.temporal}, host ${cpu.host}, bench ${cpu.bench}; ` +
      `workerd CPU per start ${round1((cpu.workerd * 1000) / perSecond)} ms (the profiler's own thread included)`,
  );
  console.log(
    `${total} samples of the Worker's isolate: ${["(idle)", "(program)", "(garbage collector)"].map((n) => `${n} ${pct(self.get(n) ?? 0)}`).join(", ")}`,
  );
  console.log(`\nself time, top ${TOP}:`);
  for (const [name, n] of top(self, () => true)) console.log(`  ${pct(n).padStart(6)}  ${name}`);
  console.log(`\ninclusive time in our files (src/, durable-objects/), top ${TOP}:`);
  for (const [name, n] of top(inclusive, ours)) console.log(`  ${pct(n).padStart(6)}  ${name}  (self ${pct(self.get(name) ?? 0)})`);
  console.log(`\nprofile written to ${args.out} (open it in Chrome DevTools' Performance panel)`);
} finally {
  await stack.stop();
}
