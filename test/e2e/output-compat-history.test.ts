/**
 * Output compatibility of history, trace log, SSE and reset, against the real stack (Temporal,
 * wrangler dev, the host). The schemas below are written from Output's server (growthxai/output
 * api/src: get_history.js, describe_workflow.js, event_serialization.js, stream_history.js,
 * trace_log.js, reset.js, middleware/error_handler.js) and its CLI (sdk/cli/src: services/
 * workflow_history.ts, workflow_history/correlator.ts, monitor_stream.ts, trace_reader.ts,
 * cost_calculator.ts), not from our code.
 */
import { Client, Connection } from "@temporalio/client";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { z } from "zod";
import { readSse } from "../../src/shared/sse-reader.ts";
import { api, eventually, postJson } from "./helpers.ts";

// ---------------------------------------------------------------- Output's shapes

/** describe_workflow.js toWorkflowInfo. */
const workflowInfo = z.object({
  workflowId: z.string(),
  runId: z.string(),
  status: z.enum(["running", "completed", "failed", "cancelled", "terminated", "timed_out", "continued_as_new"]),
  startTime: z.string().datetime().nullable(),
  closeTime: z.string().datetime().nullable(),
  historyLength: z.number().int().nonnegative(),
  taskQueue: z.string(),
});

/** event_serialization.js serializeEvent: exactly one `<x>EventAttributes` key besides the four fields. */
const historyEvent = z
  .object({
    eventId: z.string().regex(/^\d+$/),
    eventType: z.number().int(),
    eventTypeName: z.string().regex(/^[A-Z_]+$/),
    eventTime: z.string().datetime().nullable(),
  })
  .catchall(z.record(z.string(), z.unknown()))
  .refine(
    (e) => Object.keys(e).filter((k) => k.endsWith("EventAttributes")).length <= 1 && !("attributes" in e),
    "one *EventAttributes key",
  )
  .refine((e) => !e.eventTypeName.startsWith("EVENT_TYPE_"), "eventTypeName has no EVENT_TYPE_ prefix");

/** get_history.js: the JSON page. */
const historyPage = z.object({
  workflow: workflowInfo.nullable(),
  events: z.array(historyEvent),
  runId: z.string(),
  nextPageToken: z
    .string()
    .regex(/^[A-Za-z0-9+/]+={0,2}$/)
    .nullable(),
});
type HistoryPage = z.infer<typeof historyPage>;
type Event = z.infer<typeof historyEvent>;

/** middleware/error_handler.js + our code: Output's envelope has a string `error`; ours keeps `code`. */
const codeOf = (body: unknown): string | undefined => {
  const b = body as { error?: unknown; code?: string };
  return typeof b.error === "string" ? b.code : (b.error as { code?: string } | undefined)?.code;
};

/** trace_log.js. */
const traceLogResponse = z.object({ source: z.literal("remote"), runId: z.string(), data: z.record(z.string(), z.unknown()) });

/** The node tree the CLI's `debug` (trace_formatter.ts DebugNode) and `cost` (types/cost.ts TraceNode) read. */
type TraceNode = z.infer<typeof traceNodeBase> & { children?: TraceNode[] };
const traceNodeBase = z.object({
  kind: z.string(),
  name: z.string(),
  phase: z.enum(["start", "end", "error"]),
  status: z.string(),
  startedAt: z.number().nullable(),
  endedAt: z.number().nullable(),
  input: z.unknown().optional(),
  output: z.unknown().optional(),
  error: z.unknown().optional(),
  attributes: z.record(z.string(), z.unknown()).optional(),
});
const traceNode: z.ZodType<TraceNode> = traceNodeBase.extend({ children: z.lazy(() => z.array(traceNode)).optional() });

// ---------------------------------------------------------------- the CLI's logic, ported

/** services/workflow_history.ts fetchAllPages: follow nextPageToken (with runId once known) until null. */
async function walkHistory(workflowId: string, runId?: string) {
  const pages: HistoryPage[] = [];
  let token: string | undefined;
  let resolvedRunId = runId;
  for (;;) {
    const query = new URLSearchParams({ pageSize: "50", includePayloads: "false" });
    if (resolvedRunId) query.set("runId", resolvedRunId);
    if (token) query.set("pageToken", token);
    const res = await api(`/workflow/${workflowId}/history?${query}`);
    expect(res.status).toBe(200);
    const page = historyPage.parse(await res.json());
    pages.push(page);
    resolvedRunId = resolvedRunId ?? page.runId;
    if (!page.nextPageToken) break;
    token = page.nextPageToken;
    if (pages.length > 50) throw new Error("the page walk does not end");
  }
  return { meta: pages[0]!.workflow, runId: resolvedRunId, events: pages.flatMap((p) => p.events), pages };
}

const attrs = (e: Event | undefined) => {
  const key = e && Object.keys(e).find((k) => k.endsWith("EventAttributes"));
  return (key ? (e as Record<string, unknown>)[key] : undefined) as Record<string, unknown> | undefined;
};

/** workflow_history/correlator.ts, reduced to what a span needs: name, status, attempts. */
function correlate(events: Event[]) {
  const spans = new Map<string, { name: string; status: string; scheduledEventId: string }>();
  for (const e of events) {
    const a = attrs(e) ?? {};
    if (e.eventTypeName === "ACTIVITY_TASK_SCHEDULED") {
      const full = (a.activityType as { name?: string } | undefined)?.name ?? (a.stepName as string) ?? "unknown";
      if (full.startsWith("__internal#")) continue;
      spans.set(e.eventId, { name: (a.stepName as string) || full, status: "pending", scheduledEventId: e.eventId });
    } else if (e.eventTypeName.startsWith("ACTIVITY_TASK_")) {
      const span = spans.get(String(a.scheduledEventId));
      if (!span) continue;
      if (e.eventTypeName === "ACTIVITY_TASK_STARTED") span.status = "running";
      else if (e.eventTypeName === "ACTIVITY_TASK_COMPLETED") span.status = "completed";
      else span.status = "failed";
    }
  }
  return [...spans.values()];
}

const TERMINAL = new Set(["completed", "failed", "cancelled", "terminated", "timed_out"]);

/** cost_calculator.ts findLLMCalls: `llm` nodes with `llm:usage`, under the nearest `step`. */
function findLlmCalls(node: TraceNode, step: string | null = null): Array<{ step: string | null; model: string; total: number }> {
  const here = node.kind === "step" ? node.name : step;
  const own =
    node.kind === "llm" && node.attributes?.["llm:usage"]
      ? [
          {
            step,
            model: (node.attributes["llm:usage"] as { modelId: string }).modelId,
            total: (node.attributes["llm:usage"] as { total: number }).total,
          },
        ]
      : [];
  return [...own, ...(node.children ?? []).flatMap((c) => findLlmCalls(c, here))];
}

async function startTwoSteps(text: string, pauseMs = 0) {
  const res = await postJson("/workflow/start", { workflowName: "two_steps", input: { text, pauseMs } });
  expect(res.status).toBe(200);
  return (await res.json()) as { workflowId: string; runId: string };
}

async function sseFrames(path: string) {
  const res = await api(path);
  expect(res.status).toBe(200);
  const frames: Array<{ event: string; data: unknown }> = [];
  for await (const m of readSse(res.body!)) {
    frames.push({ event: m.event, data: JSON.parse(m.data) });
    if (m.event === "done" || m.event === "server_error") break;
  }
  return frames;
}

// ---------------------------------------------------------------- tests

describe("history JSON as Output's CLI reads it", () => {
  it("a finished two_steps: the walk ends, the header has status and times, the correlator finds both steps", async () => {
    const { workflowId, runId } = await startTwoSteps("history for the cli");
    const done = await eventually(async () => {
      const walk = await walkHistory(workflowId);
      return walk.meta && TERMINAL.has(walk.meta.status) && walk;
    });
    expect(done.meta).toMatchObject({ workflowId, runId, status: "completed", taskQueue: "outrider" });
    expect(Date.parse(done.meta!.closeTime!)).toBeGreaterThanOrEqual(Date.parse(done.meta!.startTime!));
    expect(done.meta!.historyLength).toBe(done.events.length);
    expect(done.events.map((e) => Number(e.eventId))).toEqual(done.events.map((_, i) => i + 1));
    expect(done.pages.slice(1).every((p) => p.workflow === null)).toBe(true);
    expect(correlate(done.events)).toEqual([
      expect.objectContaining({ name: "countWords", status: "completed" }),
      expect.objectContaining({ name: "shout", status: "completed" }),
    ]);
    expect(done.events.at(-1)!.eventTypeName).toBe("WORKFLOW_EXECUTION_COMPLETED");
    // includePayloads=false: no payload-bearing fields at all.
    expect(done.events.every((e) => !["input", "result", "failure"].some((f) => f in (attrs(e) ?? {})))).toBe(true);

    // With payloads, decoded in place as arrays (Output's decodeEventPayloads).
    const rich = historyPage.parse(await (await api(`/workflow/${workflowId}/history?pageSize=50&includePayloads=true`)).json());
    const started = rich.events.find((e) => e.eventTypeName === "WORKFLOW_EXECUTION_STARTED");
    expect(attrs(started)).toMatchObject({ input: [{ text: "history for the cli", pauseMs: 0 }], workflowType: { name: "two_steps" } });
    const completed = rich.events.find((e) => e.eventTypeName === "WORKFLOW_EXECUTION_COMPLETED");
    expect(attrs(completed)).toMatchObject({ result: [{ words: 4, shouted: "HISTORY FOR THE CLI" }] });
  });

  it("a running run: the walk stops at the current end (null token); a long-poll wakes on new events and sees the end", async () => {
    const { workflowId, runId } = await startTwoSteps("still going", 3000);
    const early = await eventually(async () => {
      const walk = await walkHistory(workflowId);
      return walk.events.some((e) => e.eventTypeName === "TIMER_STARTED") && walk;
    });
    expect(early.meta).toMatchObject({ status: "running", runId });
    expect(early.pages.at(-1)!.nextPageToken).toBeNull();

    // monitor_stream.ts: resume from a cursor with longPollTimeoutMs until workflow.status is terminal.
    let token = historyPage.parse(
      await (await api(`/workflow/${workflowId}/history?runId=${runId}&pageSize=${early.events.length - 1}`)).json(),
    ).nextPageToken!;
    const seen = early.events.slice(0, early.events.length - 1).map((e) => Number(e.eventId));
    let status = "running";
    for (let polls = 0; !TERMINAL.has(status) && polls < 40; polls++) {
      const res = await api(`/workflow/${workflowId}/history?runId=${runId}&pageToken=${encodeURIComponent(token)}&longPollTimeoutMs=2500`);
      expect(res.status).toBe(200);
      const page = historyPage.parse(await res.json());
      expect(page.workflow).not.toBeNull(); // every long-poll call carries the summary
      seen.push(...page.events.map((e) => Number(e.eventId)));
      status = page.workflow!.status;
      if (page.nextPageToken) token = page.nextPageToken;
    }
    expect(status).toBe("completed");
    expect(seen).toEqual(seen.map((_, i) => i + 1));
  });

  it("runId pins a run; an unknown one is 404; a token that is not ours is 400 InvalidPageTokenError", async () => {
    const { workflowId, runId } = await startTwoSteps("pin me");
    await eventually(async () => (await walkHistory(workflowId)).meta?.status === "completed");
    const pinned = historyPage.parse(await (await api(`/workflow/${workflowId}/runs/${runId}/history`)).json());
    expect(pinned.runId).toBe(runId);
    const unknown = await api(`/workflow/${workflowId}/history?runId=${crypto.randomUUID()}`);
    expect(unknown.status).toBe(404);
    const bad = await api(`/workflow/${workflowId}/history?runId=${runId}&pageToken=${encodeURIComponent(btoa("not a cursor"))}`);
    expect(bad.status).toBe(400);
    const body = await bad.json();
    expect(codeOf(body)).toBe("invalid_page_token");
    if (typeof (body as { error: unknown }).error === "string") expect((body as { error: string }).error).toBe("InvalidPageTokenError");
    expect((await api(`/workflow/${workflowId}/runs/nope/history`)).status).toBe(400);
  });
});

describe("SSE history stream in Output's vocabulary", () => {
  it("workflow frame with closed, history frames of Output events, done with WORKFLOW_EXECUTION_COMPLETED", async () => {
    const { workflowId, runId } = await startTwoSteps("stream me");
    const frames = await sseFrames(`/workflow/${workflowId}/history/stream`);
    const workflow = workflowInfo.extend({ closed: z.boolean() }).parse(frames[0]!.data);
    expect(frames[0]!.event).toBe("workflow");
    expect(workflow).toMatchObject({ workflowId, runId });
    const events = frames.filter((f) => f.event === "history").flatMap((f) => z.array(historyEvent).parse(f.data));
    expect(events.at(-1)!.eventTypeName).toBe("WORKFLOW_EXECUTION_COMPLETED");
    expect(frames.at(-1)).toEqual({ event: "done", data: { reason: "WORKFLOW_EXECUTION_COMPLETED" } });
    // Reconnecting to the finished run: the workflow frame says closed.
    const again = await sseFrames(`/workflow/${workflowId}/runs/${runId}/history/stream?lastEventId=1`);
    expect(again[0]).toMatchObject({ event: "workflow", data: { closed: true, status: "completed" } });
  });
});

describe("trace log as Output's debug and cost read it", () => {
  it("424 while running; then {source: remote, runId, data} with a step node per step and LLM usage on llm nodes", async () => {
    const { workflowId } = await startTwoSteps("trace soon", 2000);
    const early = await api(`/workflow/${workflowId}/trace-log`);
    expect(early.status).toBe(424);
    expect(codeOf(await early.json())).toBe("run_not_finished");

    const trace = await eventually(async () => {
      const r = await api(`/workflow/${workflowId}/trace-log`);
      return r.status === 200 && traceLogResponse.parse(await r.json());
    });
    const root = traceNode.parse(trace.data);
    expect(root).toMatchObject({
      kind: "workflow",
      name: "two_steps",
      status: "completed",
      phase: "end",
      output: { words: 2, shouted: "TRACE SOON" },
    });
    expect(root.endedAt! - root.startedAt!).toBeGreaterThanOrEqual(2000);
    expect(root.children!.map((s) => [s.kind, s.name, s.status, s.input, s.output])).toEqual([
      ["step", "countWords", "completed", "trace soon", { text: "trace soon", words: 2 }],
      ["step", "shout", "completed", "trace soon", "TRACE SOON"],
    ]);
    const pinned = traceLogResponse.parse(await (await api(`/workflow/${workflowId}/runs/${trace.runId}/trace-log`)).json());
    expect(pinned.data).toEqual(trace.data);
  });

  it("company_research: the cost command's walk finds one LLM call per step, with the run's own usage", async () => {
    const res = await postJson("/workflow/run", { workflowName: "company_research", input: { domain: "acme.com" } });
    const result = (await res.json()) as { workflowId: string; attributes: Array<{ type: string; modelId: string; total: number }> };
    const trace = await eventually(async () => {
      const r = await api(`/workflow/${result.workflowId}/trace-log`);
      return r.status === 200 && traceLogResponse.parse(await r.json());
    });
    const calls = findLlmCalls(traceNode.parse(trace.data));
    expect(calls).toEqual(
      result.attributes.filter((a) => a.type === "llm:usage").map((a) => ({ step: "askModel", model: a.modelId, total: a.total })),
    );
  });
});

describe("POST /workflow/:id/reset", () => {
  let temporal: Client;
  beforeAll(async () => {
    temporal = new Client({ connection: await Connection.connect({ address: inject("temporalAddress") }) });
  });
  afterAll(async () => temporal?.connection.close());

  it("resets a two_steps run after its first step: the new run keeps countWords, runs shout again, and completes", async () => {
    const { workflowId, runId: oldRunId } = await startTwoSteps("reset me", 4000);
    // Wait until the first step is done and the workflow has taken it in (it then sleeps 4 s).
    await eventually(async () => (await walkHistory(workflowId)).events.some((e) => e.eventTypeName === "TIMER_STARTED"));

    const res = await postJson(`/workflow/${workflowId}/reset`, { stepName: "countWords", reason: "e2e reset" });
    expect(res.status).toBe(200);
    expect(res.headers.get("deprecation")).toBe("true");
    expect(res.headers.get("sunset")).toBe("Thu, 16 Jul 2026 00:00:00 GMT");
    // Output's deprecated middleware names the successor as a URL template.
    expect(res.headers.get("link")).toBe(`</workflow/{id}/runs/{rid}/reset>; rel="successor-version"`);
    const reset = z.object({ workflowId: z.literal(workflowId), runId: z.string() }).parse(await res.json());
    expect(reset.runId).not.toBe(oldRunId);

    // The workflow's status and result follow the new run to its end.
    const status = await eventually(async () => {
      const s = (await (await api(`/workflow/${workflowId}/status`)).json()) as { runId: string; status: string };
      return s.status === "completed" && s;
    }, 60_000);
    expect(status.runId).toBe(reset.runId);
    const result = (await (await api(`/workflow/${workflowId}/result`)).json()) as { runId: string; output: unknown };
    expect(result).toMatchObject({ runId: reset.runId, output: { words: 2, shouted: "RESET ME" } });

    // The replaced run stays readable pinned: what Temporal says of it (the reset terminated it), its
    // input, no result output; and a stop of it is 404 as for any run that has ended.
    const described = await temporal.workflow.getHandle(workflowId, oldRunId).describe();
    expect(described.status.name).toBe("TERMINATED");
    const oldStatus = (await (await api(`/workflow/${workflowId}/runs/${oldRunId}/status`)).json()) as Record<string, unknown>;
    expect(oldStatus).toMatchObject({ workflowId, runId: oldRunId, status: "terminated" });
    expect(oldStatus.completedAt as number).toBeGreaterThanOrEqual(oldStatus.startedAt as number);
    expect(await (await api(`/workflow/${workflowId}/runs/${oldRunId}/input`)).json()).toEqual({
      workflowId,
      runId: oldRunId,
      input: { text: "reset me", pauseMs: 4000 },
    });
    expect(await (await api(`/workflow/${workflowId}/runs/${oldRunId}/result`)).json()).toMatchObject({
      runId: oldRunId,
      status: "terminated",
      output: null,
    });
    const stopOld = await api(`/workflow/${workflowId}/runs/${oldRunId}/stop`, { method: "PATCH" });
    expect(stopOld.status).toBe(404);
    expect(await stopOld.json()).toMatchObject({ code: "run_ended" });

    // The new run's history, through our API and straight from Temporal: the same events.
    const walk = await eventually(async () => {
      const w = await walkHistory(workflowId, reset.runId);
      return w.meta?.status === "completed" && w;
    });
    const fromTemporal = await temporal.workflow.getHandle(workflowId, reset.runId).fetchHistory();
    expect(walk.events.map((e) => Number(e.eventId))).toEqual(fromTemporal.events!.map((e) => Number(e.eventId)));
    const spans = correlate(walk.events);
    expect(spans.map((s) => [s.name, s.status])).toEqual([
      ["countWords", "completed"],
      ["shout", "completed"],
    ]);
    // countWords ran once, before the reset point (its events were copied); shout was scheduled in the new run.
    const resetPoint = walk.events.find((e) => e.eventTypeName === "WORKFLOW_TASK_FAILED");
    expect(resetPoint).toBeDefined();
    const countWords = spans.find((s) => s.name === "countWords")!;
    const shout = spans.find((s) => s.name === "shout")!;
    expect(Number(countWords.scheduledEventId)).toBeLessThan(Number(resetPoint!.eventId));
    expect(Number(shout.scheduledEventId)).toBeGreaterThan(Number(resetPoint!.eventId));
    expect(walk.events.filter((e) => e.eventTypeName === "ACTIVITY_TASK_SCHEDULED")).toHaveLength(2);

    // The old run ended terminated by the reset; its own history and stream say so.
    const old = await walkHistory(workflowId, oldRunId);
    expect(old.meta).toMatchObject({ runId: oldRunId, status: "terminated" });
    const oldFrames = await sseFrames(`/workflow/${workflowId}/runs/${oldRunId}/history/stream`);
    expect(oldFrames.at(-1)).toEqual({ event: "done", data: { reason: "WORKFLOW_EXECUTION_TERMINATED" } });
    // The unpinned stream follows the new run.
    const newFrames = await sseFrames(`/workflow/${workflowId}/history/stream`);
    expect(newFrames[0]).toMatchObject({ event: "workflow", data: { runId: reset.runId } });
    expect(newFrames.at(-1)).toEqual({ event: "done", data: { reason: "WORKFLOW_EXECUTION_COMPLETED" } });

    // The pinned reset of a finished run works too, without deprecation headers.
    const again = await postJson(`/workflow/${workflowId}/runs/${reset.runId}/reset`, { stepName: "countWords" });
    expect(again.status).toBe(200);
    expect(again.headers.get("deprecation")).toBeNull();
    const third = z.object({ workflowId: z.string(), runId: z.string() }).parse(await again.json());
    await eventually(async () => {
      const s = (await (await api(`/workflow/${workflowId}/status`)).json()) as { runId: string; status: string };
      return s.runId === third.runId && s.status === "completed";
    }, 60_000);
  });

  it("404 StepNotFoundError for an unknown step; 409 StepNotCompletedError for a step still retrying", async () => {
    // Three failed attempts with 1 s, 2 s, 4 s back-off: about 7 s with the step scheduled, not completed.
    const start = await postJson("/workflow/start", { workflowName: "flaky_step", input: { failures: 3 } });
    expect(start.status).toBe(200);
    const { workflowId } = (await start.json()) as { workflowId: string };
    await eventually(async () => (await walkHistory(workflowId)).events.some((e) => e.eventTypeName === "ACTIVITY_TASK_SCHEDULED"));
    const unknown = await postJson(`/workflow/${workflowId}/reset`, { stepName: "noSuchStep" });
    expect(unknown.status).toBe(404);
    expect(codeOf(await unknown.json())).toBe("step_not_found");
    const pending = await postJson(`/workflow/${workflowId}/reset`, { stepName: "unreliableStep" });
    expect(pending.status).toBe(409);
    expect(codeOf(await pending.json())).toBe("step_not_completed");
    const missing = await postJson(`/workflow/${workflowId}/reset`, {});
    expect(missing.status).toBe(400);
    const otherRun = await postJson(`/workflow/${workflowId}/runs/${crypto.randomUUID()}/reset`, { stepName: "unreliableStep" });
    expect(otherRun.status).toBe(404);
    expect(codeOf(await otherRun.json())).toBe("run_not_found");
    await postJson(`/workflow/${workflowId}/terminate`, { reason: "done with it" });
  });
});
