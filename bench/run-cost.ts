/**
 * What one run costs the pipeline, at sustained load: host → edge requests, D1 statements and
 * Temporal history requests per run, for `hello` and `company_research` (the stack's development
 * organization, unmetered), and for `hello` again from an organization with metering (credits):
 * its runs hold credits at the start and settle at the end.
 *
 *   npm run bench:cost -- [--concurrency 8] [--seconds 15] [--research-seconds 10] [--out FILE] [--before FILE --before-label TEXT] [--write]
 *
 * Counting is bench-only: the stack's edge runs bench/worker-entry.ts (wraps the D1 binding of the
 * Worker and of the RunStream DOs, counts run-event pushes), and Temporal's own Prometheus metrics
 * (`service_requests` by operation, on the dev server's metrics port) count history requests from
 * every client of Temporal (the host's relay and result calls alike). Counters are read before and
 * after each load phase, once every run of the phase has closed in Temporal and the host has been
 * quiet; then every run is checked: D1 row completed, log complete (its stream ends with `done`),
 * and for the metered organization: no credits still held once every run has ended.
 *
 * --out FILE: the figures as JSON (the before/after table is written from two runs,
 * see docs/BENCHMARKS.md).
 */
import { readFileSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { Client, Connection } from "@temporalio/client";
import { startStack } from "../test/support/stack.ts";
import { round1, writeSection } from "./report.ts";

const { values: args } = parseArgs({
  options: {
    concurrency: { type: "string", default: "8" },
    seconds: { type: "string", default: "15" },
    "research-seconds": { type: "string", default: "10" },
    out: { type: "string" },
    /** Figures of the "before" code (the JSON of --out from a run on the old commit), for the table. */
    before: { type: "string" },
    "before-label": { type: "string", default: "main at 59d3151" },
    write: { type: "boolean", default: false },
  },
});
const CONCURRENCY = Number(args.concurrency);
const stack = await startStack({ env: { OUTRIDER_EDGE_ENTRY: "bench/worker-entry.ts" } });
const METRICS_PORT = stack.ports.temporalMetrics;
const temporal = new Client({ connection: await Connection.connect({ address: stack.temporalAddress }) });
const api = (path: string, init?: RequestInit, key = stack.apiKey) =>
  fetch(`${stack.baseUrl}${path}`, {
    ...init,
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json", ...init?.headers },
  });
const admin = async <T>(method: string, path: string, body?: unknown): Promise<T> => {
  const res = await fetch(`${stack.baseUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${stack.adminKey}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
};

/** An organization with metering on (credits for every run of the phase) and an API key of its own. */
async function meteredOrganization(): Promise<{ id: string; key: string }> {
  const { id } = await admin<{ id: string }>("POST", "/admin/v1/organizations", { name: "bench metered" });
  const { key } = await admin<{ key: string }>("POST", `/admin/v1/organizations/${id}/api-keys`, { name: "bench" });
  await admin("POST", `/admin/v1/organizations/${id}/credits`, { amount: 1_000_000_000, note: "bench" });
  return { id, key };
}

interface Counters {
  workerStatements: number;
  runStreamStatements: number;
  runStreamBatches: number;
  runEventPushes: number;
  historyRequests: number;
}

/**
 * History requests Temporal's frontend served: `GetWorkflowExecutionHistory` (and its long-poll
 * form, which the server counts as `PollWorkflowExecutionHistory`, and the reverse variant).
 */
async function historyRequests(): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${METRICS_PORT}/metrics`)).text();
  let total = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith("service_requests{") || !line.includes('service_name="frontend"')) continue;
    if (/operation="(Get|Poll)WorkflowExecutionHistory(Reverse)?"/.test(line)) total += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return total;
}

async function counters(): Promise<Counters> {
  const edge = (await (await fetch(`${stack.baseUrl}/__bench/counters`)).json()) as Omit<Counters, "historyRequests">;
  return { ...edge, historyRequests: await historyRequests() };
}

const per = (n: number, runs: number) => Math.round((n / runs) * 100) / 100;
const diff = (a: Counters, b: Counters): Counters =>
  Object.fromEntries(Object.keys(a).map((k) => [k, b[k as keyof Counters] - a[k as keyof Counters]])) as unknown as Counters;

async function waitClosed(workflowIds: string[]): Promise<void> {
  for (const id of workflowIds) {
    for (;;) {
      const d = await temporal.workflow.getHandle(id).describe();
      if (d.status.name !== "RUNNING") break;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

/** Waits until the counters stop moving (the host has pushed everything, the DOs have projected it). */
async function quiet(): Promise<Counters> {
  let last = await counters();
  for (;;) {
    await new Promise((r) => setTimeout(r, 2_000));
    const now = await counters();
    if (now.runEventPushes === last.runEventPushes && now.runStreamStatements === last.runStreamStatements) return now;
    last = now;
  }
}

async function phase(workflowName: string, input: unknown, seconds: number, metered?: { id: string; key: string }) {
  const call = (path: string, init?: RequestInit) => api(path, init, metered?.key);
  // Warm-up (isolates, caches), not counted.
  for (let i = 0; i < 3; i++) {
    const res = await call("/workflow/run", { method: "POST", body: JSON.stringify({ workflowName, input }) });
    await res.arrayBuffer();
  }
  const before = await quiet();
  const workflowIds: string[] = [];
  let failed = 0;
  const deadline = performance.now() + seconds * 1000;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < deadline) {
        const res = await call("/workflow/start", { method: "POST", body: JSON.stringify({ workflowName, input }) });
        if (res.status === 200) workflowIds.push(((await res.json()) as { workflowId: string }).workflowId);
        else {
          failed++;
          await res.arrayBuffer();
        }
      }
    }),
  );
  const startSeconds = (performance.now() - t0) / 1000;
  await waitClosed(workflowIds);
  const after = await quiet();
  const d = diff(before, after);
  if (d.historyRequests === 0) {
    const text = await (await fetch(`http://127.0.0.1:${METRICS_PORT}/metrics`)).text();
    console.warn(
      "no history requests counted; frontend operations with History:",
      text
        .split("\n")
        .filter((l) => l.startsWith("service_requests{") && l.includes("History"))
        .join("\n"),
    );
  }
  // Accounting, after the counters were read: every row completed, every log complete.
  let notCompleted = 0;
  for (const id of workflowIds) {
    const status = ((await (await call(`/workflow/${id}/status`)).json()) as { status: string }).status;
    if (status !== "completed") notCompleted++;
  }
  let incompleteLogs = 0;
  for (const id of workflowIds.slice(0, 50)) {
    const text = await (await call(`/workflow/${id}/history/stream`)).text();
    if (!text.includes("event: done")) incompleteLogs++;
  }
  const runs = workflowIds.length;
  // Every run has ended: a metered organization holds nothing any more.
  const creditsHeldAfter = metered
    ? (await admin<{ reserved: number }>("GET", `/admin/v1/organizations/${metered.id}/credits?limit=1`)).reserved
    : null;
  return {
    workflowName,
    metered: metered !== undefined,
    creditsHeldAfter,
    runs,
    failedStarts: failed,
    startsPerSecond: round1(runs / startSeconds),
    hostToEdgeRequestsPerRun: per(d.runEventPushes, runs),
    d1StatementsPerRunPipeline: per(d.runStreamStatements, runs),
    d1BatchesPerRunPipeline: per(d.runStreamBatches, runs),
    d1StatementsPerRunWorker: per(d.workerStatements, runs),
    historyRequestsPerRun: per(d.historyRequests, runs),
    notCompleted,
    incompleteLogs,
    logsChecked: Math.min(50, runs),
  };
}

type PhaseResult = Awaited<ReturnType<typeof phase>>;

function report(after: PhaseResult[], before: PhaseResult[] | null): string[] {
  const date = new Date().toISOString().slice(0, 10);
  const rows: Array<[string, keyof PhaseResult, string]> = [
    ["host → edge requests per run", "hostToEdgeRequestsPerRun", "≤ 1"],
    [
      "D1 statements per run, RunStream DOs (the start: catalog, credits, run row; the projection)",
      "d1StatementsPerRunPipeline",
      "≤ 5 (hello)",
    ],
    ["D1 batches per run, run pipeline", "d1BatchesPerRunPipeline", ""],
    ["D1 statements per run, Worker (auth)", "d1StatementsPerRunWorker", ""],
    ["Temporal history requests per run", "historyRequestsPerRun", ""],
    ["runs started (starts/s)", "runs", ""],
    ["rows not completed / logs incomplete (of those checked)", "notCompleted", "0 / 0"],
    ["credits still held once every run has ended", "creditsHeldAfter", "0"],
  ];
  const cell = (r: PhaseResult | undefined, key: keyof PhaseResult) => {
    if (!r) return "–";
    if (key === "runs") return `${r.runs} (${r.startsPerSecond}/s)`;
    if (key === "notCompleted") return `${r.notCompleted} / ${r.incompleteLogs} of ${r.logsChecked}`;
    if (key === "creditsHeldAfter") return r.creditsHeldAfter === null ? "–" : String(r.creditsHeldAfter);
    return String(r[key]);
  };
  const lines = [
    "## Run cost: requests and statements per run at sustained load",
    "",
    "```sh",
    `npm run bench:cost -- --concurrency ${CONCURRENCY} --seconds ${args.seconds} --research-seconds ${args["research-seconds"]} --before before.json --write`,
    "```",
    "",
    `Measured ${date} on the 2-core development machine, whole stack local. ${CONCURRENCY} clients start runs back to back (\`POST /workflow/start\`) for the given seconds; the counters are read once every run has closed and the pipeline is quiet, and divided by the runs started. Counting is bench-only: the edge runs \`bench/worker-entry.ts\` (wraps the D1 binding of the Worker and of the RunStream DOs, counts the host's run-event pushes) and Temporal's own metrics count \`GetWorkflowExecutionHistory\` calls from every client. "Before" is ${args["before-label"]} measured the same way in the same session (bench files copied onto it), right before "after". The metered organization is created for the bench through the admin API, with credits for every run; each of its runs holds \`CODE_RUN_CREDIT_HOLD\` at the start and is settled at its end. Statements per \`company_research\` run depend on how its many events group into D1 applications, which varies with timing from one session to the next.`,
    "",
  ];
  const phases = [
    { name: "hello", metered: false, title: "**hello** (an organization without metering)" },
    { name: "company_research", metered: false, title: "**company_research** (an organization without metering)" },
    { name: "hello", metered: true, title: "**hello** (an organization with metering: each run holds credits, then is charged)" },
  ];
  for (const { name, metered, title } of phases) {
    const find = (results: PhaseResult[] | null | undefined) =>
      results?.find((r) => r.workflowName === name && Boolean(r.metered) === metered);
    const a = find(after);
    const b = find(before);
    lines.push(title, "", `| figure | before | after | target |`, `|---|---|---|---|`);
    for (const [label, key, target] of rows) {
      if (key === "creditsHeldAfter" && !metered) continue;
      lines.push(`| ${label} | ${cell(b, key)} | ${cell(a, key)} | ${target} |`);
    }
    lines.push("");
  }
  return lines;
}

try {
  const results = [
    await phase("hello", { name: "bench" }, Number(args.seconds)),
    await phase("company_research", { domain: "example.com" }, Number(args["research-seconds"])),
    await phase("hello", { name: "bench" }, Number(args.seconds), await meteredOrganization()),
  ];
  console.log(JSON.stringify(results, null, 2));
  if (args.out) writeFileSync(args.out, JSON.stringify(results, null, 2));
  if (args.write)
    writeSection("run-cost", report(results, args.before ? (JSON.parse(readFileSync(args.before, "utf8")) as typeof results) : null));
} finally {
  await temporal.connection.close();
  await stack.stop();
}
