/**
 * What the edge adds: `POST /workflow/start` and `POST /workflow/run` through the whole local stack
 * against the same calls made directly with @temporalio/client on the same machine, interleaved
 * (one edge call, one direct call, repeat) so both see the same load. Then starts per second
 * sustained with a fixed number of concurrent clients, directly and through the edge, and an
 * audit of every run the edge started: its D1 row ends `completed` (read from D1 itself, not
 * through a route that would settle it), its log holds exactly Temporal's history (nothing lost,
 * nothing twice), and Temporal holds exactly one execution under its workflow id.
 *
 * Fair phases: every phase waits until Temporal has no open `hello` execution left before the next
 * one begins (the drain), so the edge's sustained phase does not compete with the thousands of
 * runs the direct phase started. The floor (median GET /health and authenticated POST /heartbeat
 * through the same edge) shows what `wrangler dev`'s proxy and the Worker cost on their own.
 *
 * The edge's local state (D1, the DOs' SQLite files) lives on tmpfs, as Temporal's dev server keeps
 * its own in memory (bench/report.ts `benchStateRoot`); `--disk` puts it on disk instead.
 * `--worker-socket` calls the Worker's own socket instead of wrangler dev's proxy in front of it
 * (production has no such proxy), and has the host push there too (bench/worker-socket.ts).
 *
 *   npm run bench:start -- [--iterations 60] [--concurrency 16] [--seconds 15] [--disk] [--worker-socket] [--out FILE] [--before FILE [--before-label TEXT]] [--write]
 */
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { Client, Connection } from "@temporalio/client";
import { startStack } from "../test/support/stack.ts";
import { benchStateRoot, currentCommit, localTraceCollector, median, round1, writeSection } from "./report.ts";
import { type CpuSplit, withCpuSplit } from "./process-cpu.ts";

const { values: args } = parseArgs({
  options: {
    iterations: { type: "string", default: "60" },
    concurrency: { type: "string", default: "16" },
    seconds: { type: "string", default: "15" },
    /** Write the figures as JSON here (a run on older code, for --before). */
    out: { type: "string" },
    /** Figures of the "before" code (the JSON of --out from a run on the old commit), for the tables. */
    before: { type: "string" },
    /** How the before row is labelled (default: its commit and where its edge kept its state). */
    "before-label": { type: "string" },
    /** Keep the edge's local state on disk rather than tmpfs. */
    disk: { type: "boolean", default: false },
    /** Call the Worker's own socket, past wrangler's dev proxy; the host pushes there too (bench/worker-socket.ts). */
    "worker-socket": { type: "boolean", default: false },
    write: { type: "boolean", default: false },
  },
});
const ITERATIONS = Number(args.iterations);
const CONCURRENCY = Number(args.concurrency);
const SECONDS = Number(args.seconds);
const WARMUP = 5;
const traceCollector = localTraceCollector();
const TASK_QUEUE = "outrider"; // the stack's host worker polls it

const state = benchStateRoot(args.disk);
const stack = await startStack({ stateRoot: state.root, workerSocket: args["worker-socket"] }); // free ports (test/support/ports.ts)
/** How requests reach the Worker: wrangler dev's proxy (what `npm run dev` serves) or the Worker's own socket. */
const front = args["worker-socket"] ? "worker socket" : "wrangler proxy";
const edgeUrl = stack.workerUrl ?? stack.baseUrl;
const client = new Client({ connection: await Connection.connect({ address: stack.temporalAddress }) });
const post = (path: string, body: unknown) =>
  fetch(`${edgeUrl}${path}`, {
    method: "POST",
    headers: { authorization: `Bearer ${stack.apiKey}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });

const cpuText = (cpu: CpuSplit) =>
  `workerd ${cpu.workerd}, Temporal ${cpu.temporal}, host ${cpu.host}, the bench's clients ${cpu.bench}, other ${cpu.other}`;

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

const input = { name: "bench" };

/** Waits until Temporal has no open `hello` execution (the previous phase's runs have finished). */
async function drain(timeoutMs = 300_000): Promise<{ ms: number; open: number }> {
  const t0 = performance.now();
  let open = Infinity;
  while (performance.now() - t0 < timeoutMs) {
    open = (await client.workflow.count("WorkflowType = 'hello' AND ExecutionStatus = 'Running'")).count;
    if (open === 0) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  // Then a short quiet period, so the edge's last pushes and projections of those runs are done too.
  await new Promise((r) => setTimeout(r, 2000));
  return { ms: Math.round(performance.now() - t0), open };
}

/** Median of `count` sequential calls through the edge: what wrangler dev and the Worker cost on their own. */
async function floor(method: string, path: string, count: number, authenticated: boolean): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < count + WARMUP; i++) {
    const ms = await timed(async () => {
      const res = await fetch(`${edgeUrl}${path}`, {
        method,
        headers: authenticated ? { authorization: `Bearer ${stack.apiKey}` } : {},
      });
      if (!res.ok) throw new Error(`${method} ${path}: ${res.status}`);
      await res.arrayBuffer();
    });
    if (i >= WARMUP) times.push(ms);
  }
  return round1(median(times));
}

/** Every run accounted for: row completed in D1, log = Temporal history exactly, one execution. */
async function auditRuns(ids: string[]) {
  const root = resolve(import.meta.dirname, "..");
  const d1Statuses = () => {
    const out = execFileSync(
      "wrangler",
      [
        "d1",
        "execute",
        "DB",
        "--local",
        "--persist-to",
        stack.stateDir,
        "--json",
        "--command",
        "SELECT temporal_workflow_id AS id, status FROM runs",
      ],
      {
        cwd: root,
        encoding: "utf8",
        env: { ...process.env, CI: "true", WRANGLER_SEND_METRICS: "false" },
        maxBuffer: 64 * 1024 * 1024,
      },
    );
    const rows = (JSON.parse(out) as Array<{ results: Array<{ id: string; status: string }> }>)[0]!.results;
    return new Map(rows.map((r) => [r.id, r.status]));
  };
  let statuses = d1Statuses();
  for (let i = 0; i < 60 && ids.some((id) => statuses.get(id) !== "completed"); i++) {
    await new Promise((r) => setTimeout(r, 3000));
    statuses = d1Statuses();
  }
  const rowsCompleted = ids.filter((id) => statuses.get(id) === "completed").length;
  let logsComplete = 0;
  let eventsLost = 0;
  let eventsDuplicated = 0;
  let singleExecution = 0;
  const queue = [...ids];
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      for (let id = queue.pop(); id; id = queue.pop()) {
        const res = await fetch(`${edgeUrl}/workflow/${id}/history?pageSize=1000`, {
          headers: { authorization: `Bearer ${stack.apiKey}` },
        });
        const page = (await res.json()) as { events: Array<{ eventId: string | number }>; workflow: { closed: boolean } | null };
        const logged = page.events.map((e) => Number(e.eventId));
        const history = (await client.workflow.getHandle(id).fetchHistory()).events!.map((e) => Number(e.eventId));
        const seen = new Set(logged);
        eventsLost += history.filter((e) => !seen.has(e)).length;
        eventsDuplicated += logged.length - seen.size;
        if (page.workflow?.closed && JSON.stringify(logged) === JSON.stringify(history)) logsComplete++;
        let executions = 0;
        for await (const _ of client.workflow.list({ query: `WorkflowId = '${id}'` })) executions++;
        if (executions === 1) singleExecution++;
      }
    }),
  );
  return { runs: ids.length, rowsCompleted, logsComplete, eventsLost, eventsDuplicated, singleExecution };
}
const samples = { edgeStart: [] as number[], directStart: [] as number[], edgeRun: [] as number[], directRun: [] as number[] };
try {
  const floorMs = {
    health: await floor("GET", "/health", ITERATIONS, false),
    heartbeat: await floor("POST", "/heartbeat", ITERATIONS, true),
  };
  for (let i = 0; i < ITERATIONS + WARMUP; i++) {
    const keep = i >= WARMUP;
    const edgeStart = await timed(async () => {
      const res = await post("/workflow/start", { workflowName: "hello", input });
      if (res.status !== 200) throw new Error(`edge start: ${res.status}`);
      await res.arrayBuffer();
    });
    const directStart = await timed(() =>
      client.workflow.start("hello", { taskQueue: TASK_QUEUE, workflowId: `direct-hello-${crypto.randomUUID()}`, args: [input] }),
    );
    const edgeRun = await timed(async () => {
      const res = await post("/workflow/run", { workflowName: "hello", input });
      if (res.status !== 200) throw new Error(`edge run: ${res.status}`);
      await res.arrayBuffer();
    });
    const directRun = await timed(() =>
      client.workflow.execute("hello", { taskQueue: TASK_QUEUE, workflowId: `direct-hello-${crypto.randomUUID()}`, args: [input] }),
    );
    if (keep) {
      samples.edgeStart.push(edgeStart);
      samples.directStart.push(directStart);
      samples.edgeRun.push(edgeRun);
      samples.directRun.push(directRun);
    }
  }

  // Sustained starts: CONCURRENCY clients start runs back to back for SECONDS, directly, then through the edge.
  // Also where the two cores went meanwhile (bench/process-cpu.ts): the phase's runs execute as it goes.
  async function sustained(start: () => Promise<string | null>) {
    let failed = 0;
    const ids: string[] = [];
    const deadline = performance.now() + SECONDS * 1000;
    const t0 = performance.now();
    const { cpu } = await withCpuSplit(stack.pid, () =>
      Promise.all(
        Array.from({ length: CONCURRENCY }, async () => {
          while (performance.now() < deadline) {
            const id = await start().catch(() => null);
            if (id) ids.push(id);
            else failed++;
          }
        }),
      ),
    );
    return { ids, failed, perSecond: ids.length / ((performance.now() - t0) / 1000), cpu };
  }
  const drains: number[] = [(await drain()).ms];
  const direct = await sustained(async () => {
    const id = `direct-hello-${crypto.randomUUID()}`;
    await client.workflow.start("hello", { taskQueue: TASK_QUEUE, workflowId: id, args: [input] });
    return id;
  });
  // The direct phase's runs finish before the edge's phase begins (and the edge's before the audit).
  const directDrain = await drain();
  drains.push(directDrain.ms);
  if (directDrain.open > 0) console.warn(`drain: ${directDrain.open} direct runs still open after the timeout`);
  const edge = await sustained(async () => {
    const res = await post("/workflow/start", { workflowName: "hello", input });
    const body = (await res.json()) as { workflowId?: string };
    return res.status === 200 ? body.workflowId! : null;
  });
  const startsPerSecond = edge.perSecond;
  const failed = edge.failed;
  const edgeDrain = await drain();
  drains.push(edgeDrain.ms);
  const audit = await auditRuns(edge.ids);
  console.log(JSON.stringify({ audit }, null, 2));

  const m = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, round1(median(v))])) as Record<keyof typeof samples, number>;
  const figures = {
    commit: currentCommit(),
    edgeState: state.storage,
    front,
    traceCollector: traceCollector.state,
    iterations: ITERATIONS,
    medianMs: m,
    startRatio: Math.round((m.edgeStart / m.directStart) * 100) / 100,
    runRatio: Math.round((m.edgeRun / m.directRun) * 100) / 100,
    addedStartMs: round1(m.edgeStart - m.directStart),
    addedRunMs: round1(m.edgeRun - m.directRun),
    startsPerSecond: round1(startsPerSecond),
    directStartsPerSecond: round1(direct.perSecond),
    sustainedRatio: Math.round((startsPerSecond / direct.perSecond) * 100) / 100,
    // A direct start only queues the run: this is how fast the host and Temporal finished them (phase + drain).
    directFinishedPerSecond: round1(direct.ids.length / (SECONDS + directDrain.ms / 1000)),
    // The same for the runs the edge accepted in its phase.
    edgeFinishedPerSecond: round1(edge.ids.length / (SECONDS + edgeDrain.ms / 1000)),
    sustainedFailures: failed,
    /** Cores used by each process over each sustained phase (2 = both cores busy all along). */
    sustainedCpu: { direct: direct.cpu, edge: edge.cpu },
    floorMs,
    drainMs: drains,
    audit,
  };
  console.log(JSON.stringify(figures, null, 2));
  if (args.out) writeFileSync(args.out, JSON.stringify(figures, null, 2));
  const before = args.before
    ? (JSON.parse(readFileSync(args.before, "utf8")) as Partial<typeof figures> & Omit<typeof figures, "commit" | "edgeState">)
    : null;
  // Each row names its code and where its edge kept its state ("before" for figures from older benches).
  const rowLabel = (f: { commit?: string; edgeState?: string; front?: string; traceCollector?: string }) =>
    f.commit
      ? `${f.commit}, ${f.edgeState ?? "disk"}, ${f.front ?? "wrangler proxy"}, trace collector ${f.traceCollector ?? "on"}`
      : "before";
  const beforeLabel = before ? (args["before-label"] ?? rowLabel(before)) : "";
  const afterLabel = rowLabel(figures);
  const beforeRows = before
    ? [
        `| start | ${beforeLabel} | ${before.medianMs.edgeStart} ms | ${before.medianMs.directStart} ms | ${before.startRatio}× | ${before.addedStartMs} ms |`,
        `| run (start + wait for result) | ${beforeLabel} | ${before.medianMs.edgeRun} ms | ${before.medianMs.directRun} ms | ${before.runRatio}× | ${before.addedRunMs} ms |`,
        `| sustained starts/s (${CONCURRENCY} clients, ${SECONDS} s) | ${beforeLabel} | ${before.startsPerSecond}/s | ${before.directStartsPerSecond}/s | ${before.sustainedRatio}× | direct runs finished at ${before.directFinishedPerSecond}/s |`,
        `| floor: GET /health, POST /heartbeat | ${beforeLabel} | ${before.floorMs.health} ms, ${before.floorMs.heartbeat} ms | | | |`,
      ]
    : [];

  if (args.write) {
    writeSection("start-latency", [
      "## Start and run through the edge vs @temporalio/client directly",
      "",
      "```sh",
      ...(before
        ? [
            `${before.traceCollector === "off" ? "" : "X_LOCAL_OBSERVABILITY=true "}npm run bench:start -- --iterations ${ITERATIONS} --concurrency ${CONCURRENCY} --seconds ${SECONDS}${before.edgeState === "disk" ? " --disk" : ""}${before.front === "worker socket" ? " --worker-socket" : ""} --out before.json${before.commit && before.commit !== figures.commit ? `  # on ${before.commit}` : ""}`,
          ]
        : []),
      `${traceCollector.commandPrefix}npm run bench:start -- --iterations ${ITERATIONS} --concurrency ${CONCURRENCY} --seconds ${SECONDS}${args.disk ? " --disk" : ""}${args["worker-socket"] ? " --worker-socket" : ""}${before ? " --before before.json" : ""} --write`,
      "```",
      "",
      `Measured ${new Date().toISOString().slice(0, 10)} on the 2-core development machine: the whole stack local, the \`hello\` workflow, edge and direct calls interleaved in one run (${ITERATIONS} pairs after ${WARMUP} warm-up pairs), medians.`,
      "Temporal's dev server keeps its state in memory. A row marked `memory` kept the edge's local state (D1, the Durable Objects' SQLite files, R2) on tmpfs too, so neither side pays for fsyncs; `disk` kept it on the temp dir's disk (`--disk`), where SQLite's fsyncs (about 30 per `hello` run) are the edge's alone.",
      "A row marked `wrangler proxy` reached the Worker as `npm run dev` serves it, through wrangler dev's proxy (a second workerd process: a Worker handing each request to a Durable Object that fetches the user Worker); `worker socket` called the Worker's own socket (`--worker-socket`, bench/worker-socket.ts), and the host pushed there too. Production has no such proxy.",
      "`trace collector on` rows ran wrangler dev with its local trace collector (`X_LOCAL_OBSERVABILITY=true`), as every figure here did before 2026-12-01: it takes the tail events of every request and Durable Object call on workerd's one thread; `off` is how `npm run dev`, the tests and the benchmarks run the edge now (docs/configuration.md).",
      "The edge path: auth from the isolate cache, the rate limiter DO, then one call to the run's RunStream DO, which checks the input, holds credits, writes the D1 row, starts the run through the signed host hop and records `run.started` (docs/start-path.md); the direct path is one gRPC call.",
      "",
      `The floor, same edge, sequential medians: GET /health ${floorMs.health} ms, authenticated POST /heartbeat (API key, rate limiter) ${floorMs.heartbeat} ms: what ${front === "worker socket" ? "the Worker" : "`wrangler dev`'s proxy, the Worker"} and auth cost before any run work.`,
      "",
      ...(before
        ? [
            `The "${beforeLabel}" rows were measured by this same bench in the same session on the same machine, right before the "${afterLabel}" rows (\`--out\` there, \`--before\` here).`,
            "",
          ]
        : []),
      "| call | code | through the edge | direct | ratio | added |",
      "|---|---|---|---|---|---|",
      ...beforeRows,
      `| start | ${afterLabel} | ${m.edgeStart} ms | ${m.directStart} ms | ${figures.startRatio}× | ${figures.addedStartMs} ms |`,
      `| run (start + wait for result) | ${afterLabel} | ${m.edgeRun} ms | ${m.directRun} ms | ${figures.runRatio}× | ${figures.addedRunMs} ms |`,
      `| sustained starts/s (${CONCURRENCY} clients, ${SECONDS} s) | ${afterLabel} | ${figures.startsPerSecond}/s | ${figures.directStartsPerSecond}/s | ${figures.sustainedRatio}× | direct runs finished at ${figures.directFinishedPerSecond}/s |`,
      `| floor: GET /health, POST /heartbeat | ${afterLabel} | ${floorMs.health} ms, ${floorMs.heartbeat} ms | | | |`,
      "",
      `Sustained, ${CONCURRENCY} concurrent clients for ${SECONDS} s each, same run: ${figures.startsPerSecond} starts/s through the edge (${failed} failed) vs ${figures.directStartsPerSecond} starts/s directly: ${figures.sustainedRatio}×. Everything on the same two cores.`,
      `Cores each process used over the phase (from /proc, bench/process-cpu.ts; 2 is both cores busy all along): through the edge ${cpuText(edge.cpu)}; directly ${cpuText(direct.cpu)}.`,
      `Each phase starts on a quiet system: before the direct phase, between it and the edge phase, and before the audit, the bench waits until Temporal has no open \`hello\` execution left, plus 2 s (drains took ${drains.map((d) => `${(d / 1000).toFixed(1)} s`).join(", ")}). Without the drain, the edge phase would compete with the host worker still executing the direct phase's runs.`,
      `A start, direct or through the edge, only queues the run: the host and Temporal finished the direct phase's ${direct.ids.length} runs at ${figures.directFinishedPerSecond} runs/s and the edge phase's ${edge.ids.length} at ${figures.edgeFinishedPerSecond} runs/s (phase plus drain), on the same cores.`,
      "",
      `Afterwards, every one of the ${audit.runs} runs the edge started in that phase: D1 rows \`completed\` ${audit.rowsCompleted}/${audit.runs} (read from D1 directly); logs identical to Temporal's history ${audit.logsComplete}/${audit.runs} (${audit.eventsLost} events lost, ${audit.eventsDuplicated} duplicated); one Temporal execution per workflow id ${audit.singleExecution}/${audit.runs}.`,
    ]);
  }
} finally {
  await client.connection.close();
  await stack.stop();
}
