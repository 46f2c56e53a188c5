/**
 * What the edge adds: `POST /workflow/start` and `POST /workflow/run` through the whole local stack
 * against the same calls made directly with @temporalio/client on the same machine, interleaved
 * (one edge call, one direct call, repeat) so both see the same load. Then starts per second
 * sustained through the edge with a fixed number of concurrent clients.
 *
 *   npm run bench:start -- [--iterations 60] [--concurrency 16] [--seconds 20] [--write]
 */
import { parseArgs } from "node:util";
import { Client, Connection } from "@temporalio/client";
import { startStack } from "../test/support/stack.ts";
import { median, round1, writeSection } from "./report.ts";

const { values: args } = parseArgs({
  options: {
    iterations: { type: "string", default: "60" },
    concurrency: { type: "string", default: "16" },
    seconds: { type: "string", default: "20" },
    write: { type: "boolean", default: false },
  },
});
const ITERATIONS = Number(args.iterations);
const CONCURRENCY = Number(args.concurrency);
const SECONDS = Number(args.seconds);
const WARMUP = 5;
const TASK_QUEUE = "outrider"; // the stack's host worker polls it

const stack = await startStack(); // free ports (test/support/ports.ts)
const client = new Client({ connection: await Connection.connect({ address: stack.temporalAddress }) });
const post = (path: string, body: unknown) =>
  fetch(`${stack.baseUrl}${path}`, {
    method: "POST",
    headers: { authorization: `Bearer ${stack.apiKey}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

const input = { name: "bench" };
const samples = { edgeStart: [] as number[], directStart: [] as number[], edgeRun: [] as number[], directRun: [] as number[] };
try {
  for (let i = 0; i < ITERATIONS + WARMUP; i++) {
    const keep = i >= WARMUP;
    const edgeStart = await timed(async () => {
      const res = await post("/workflow/start", { workflowName: "hello", input });
      if (res.status !== 200) throw new Error(`edge start: ${res.status}`);
      await res.arrayBuffer();
    });
    const directStart = await timed(() => client.workflow.start("hello", { taskQueue: TASK_QUEUE, workflowId: `hello-${crypto.randomUUID()}`, args: [input] }));
    const edgeRun = await timed(async () => {
      const res = await post("/workflow/run", { workflowName: "hello", input });
      if (res.status !== 200) throw new Error(`edge run: ${res.status}`);
      await res.arrayBuffer();
    });
    const directRun = await timed(() => client.workflow.execute("hello", { taskQueue: TASK_QUEUE, workflowId: `hello-${crypto.randomUUID()}`, args: [input] }));
    if (keep) {
      samples.edgeStart.push(edgeStart);
      samples.directStart.push(directStart);
      samples.edgeRun.push(edgeRun);
      samples.directRun.push(directRun);
    }
  }

  // Sustained starts: CONCURRENCY clients start runs back to back for SECONDS.
  let started = 0;
  let failed = 0;
  const deadline = performance.now() + SECONDS * 1000;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < deadline) {
        const res = await post("/workflow/start", { workflowName: "hello", input });
        await res.arrayBuffer();
        if (res.status === 200) started++;
        else failed++;
      }
    }),
  );
  const startsPerSecond = started / ((performance.now() - t0) / 1000);

  const m = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, round1(median(v))])) as Record<keyof typeof samples, number>;
  const figures = {
    iterations: ITERATIONS,
    medianMs: m,
    startRatio: Math.round((m.edgeStart / m.directStart) * 100) / 100,
    runRatio: Math.round((m.edgeRun / m.directRun) * 100) / 100,
    addedStartMs: round1(m.edgeStart - m.directStart),
    addedRunMs: round1(m.edgeRun - m.directRun),
    startsPerSecond: round1(startsPerSecond),
    sustainedFailures: failed,
  };
  console.log(JSON.stringify(figures, null, 2));

  if (args.write) {
    writeSection("start-latency", [
      "## Start and run through the edge vs @temporalio/client directly",
      "",
      "```sh",
      `npm run bench:start -- --iterations ${ITERATIONS} --concurrency ${CONCURRENCY} --seconds ${SECONDS} --write`,
      "```",
      "",
      `Measured ${new Date().toISOString().slice(0, 10)} on the 2-core development machine: the whole stack local, the \`hello\` workflow, edge and direct calls interleaved in one run (${ITERATIONS} pairs after ${WARMUP} warm-up pairs), medians.`,
      "The edge path adds auth (D1), input validation, the D1 run row, the signed hop to the host and the RunStream record; the direct path is one gRPC call.",
      "",
      "| call | through the edge | direct | ratio | added |",
      "|---|---|---|---|---|",
      `| start | ${m.edgeStart} ms | ${m.directStart} ms | ${figures.startRatio}× | ${figures.addedStartMs} ms |`,
      `| run (start + wait for result) | ${m.edgeRun} ms | ${m.directRun} ms | ${figures.runRatio}× | ${figures.addedRunMs} ms |`,
      "",
      `Sustained: ${figures.startsPerSecond} starts per second through the edge with ${CONCURRENCY} concurrent clients for ${SECONDS} s (${failed} failed), everything on the same two cores.`,
    ]);
  }
} finally {
  await client.connection.close();
  await stack.stop();
}
