import { describe, expect, it } from "vitest";
import { PROGRESS_FIELD_ERROR } from "../../host/workflows/approval.ts";
import { api, eventually, postJson, type OutputErrorBody, type ResultPayload } from "./helpers.ts";

const send = (workflowId: string, kind: "signal" | "query" | "update", name: string, body?: unknown) =>
  api(`/workflow/${workflowId}/${kind}/${name}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });

async function startApproval(request: string): Promise<string> {
  const res = await postJson("/workflow/start", { workflowName: "approval", input: { request } });
  expect(res.status).toBe(200);
  return ((await res.json()) as { workflowId: string }).workflowId;
}

/** The result once the run has ended (424 WorkflowNotCompletedError until then). */
async function finalResult(workflowId: string): Promise<ResultPayload> {
  return eventually(async () => {
    const res = await api(`/workflow/${workflowId}/result`);
    if (res.status === 424) return null;
    expect(res.status).toBe(200);
    return (await res.json()) as ResultPayload;
  });
}

async function errorCode(res: Response): Promise<string> {
  return ((await res.json()) as OutputErrorBody).code;
}

/** The trace-log answer: Output's `{source, runId, data}` with the trace node tree in `data`. */
interface Trace {
  source: "remote";
  runId: string;
  data: {
    status: string;
    children: Array<{
      kind: string;
      name: string;
      status: string;
      input: unknown;
      output: unknown;
      startedAt: number;
      endedAt: number;
      attempts: number;
      error: { message: string } | null;
    }>;
  };
}

describe("signals, queries and updates on approval", () => {
  it("query shows it waiting, update changes its priority, signal completes it", async () => {
    const workflowId = await startApproval("new laptop");
    const waiting = await send(workflowId, "query", "progress");
    expect(waiting.status).toBe(200);
    // Output's contract: the body is `{payload}`, and query/update answer with the handler's result as is.
    expect(await waiting.json()).toEqual({ stage: "waiting_for_approval", priority: 3, approvedBy: null });

    const update = await send(workflowId, "update", "setPriority", { payload: { priority: 1 } });
    expect(update.status).toBe(200);
    expect(await update.json()).toEqual({ priority: 1 });
    expect(((await (await send(workflowId, "query", "progress")).json()) as { priority: number }).priority).toBe(1);

    const signal = await send(workflowId, "signal", "approve", { payload: { approvedBy: "Grace" } });
    expect(signal.status).toBe(200);
    const result = await finalResult(workflowId);
    expect(result).toMatchObject({ status: "completed", output: { request: "new laptop", approvedBy: "Grace", priority: 1 } });
  });

  it("a rejected update and a query that throws are 422 with the handler's message; unknown handlers and runs are 404", async () => {
    const workflowId = await startApproval("rejections");
    const rejected = await send(workflowId, "update", "setPriority", { payload: { priority: 42 } });
    expect(rejected.status).toBe(422);
    const body = (await rejected.json()) as OutputErrorBody;
    expect(body.code).toBe("handler_failed");
    expect(body.message).toContain("priority must be an integer from 1 to 5");
    const threw = await send(workflowId, "query", "progress", { payload: { field: "secret" } });
    expect(threw.status).toBe(422);
    expect((await threw.json()) as OutputErrorBody).toMatchObject({ code: "handler_failed", message: PROGRESS_FIELD_ERROR });

    for (const kind of ["signal", "query", "update"] as const) {
      const unknown = await send(workflowId, kind, "noSuchHandler", {});
      expect(unknown.status).toBe(404);
      expect(await errorCode(unknown)).toBe("handler_not_found");
    }
    const noRun = await send(`approval-${crypto.randomUUID()}`, "signal", "approve", { payload: { approvedBy: "x" } });
    expect(noRun.status).toBe(404);
    expect(await errorCode(noRun)).toBe("run_not_found");
    const badJson = await api(`/workflow/${workflowId}/signal/approve`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{nope",
    });
    expect(badJson.status).toBe(400);
    expect(await errorCode(badJson)).toBe("invalid_json");
    await api(`/workflow/${workflowId}/terminate`, { method: "POST" });
  });
});

describe("stopping runs", () => {
  it("PATCH stop is graceful: the run ends cancelled and its cleanup step is in the trace log", async () => {
    const workflowId = await startApproval("to be stopped");
    const stop = await api(`/workflow/${workflowId}/stop`, { method: "PATCH" });
    expect(stop.status).toBe(200);
    expect(await stop.json()).toMatchObject({ workflowId, status: "cancelling" });
    const result = await finalResult(workflowId);
    expect(result.status).toBe("cancelled");
    expect(result.trace).toMatchObject({ destinations: { local: null, remote: expect.stringContaining(workflowId) } });

    const trace = await eventually(async () => {
      const res = await api(`/workflow/${workflowId}/trace-log`);
      return res.status === 200 && ((await res.json()) as Trace);
    });
    expect(trace.data.status).toBe("cancelled");
    expect(trace.data.children.map((s) => s.name)).toEqual(["cleanupApproval"]);
    expect(trace.data.children[0]).toMatchObject({
      kind: "step",
      status: "completed",
      input: "to be stopped",
      output: { released: "to be stopped" },
      attempts: 1,
      error: null,
    });
    expect(trace.data.children[0]!.endedAt).toBeGreaterThanOrEqual(trace.data.children[0]!.startedAt);

    const again = await api(`/workflow/${workflowId}/stop`, { method: "PATCH" });
    expect(again.status).toBe(404);
    expect(await errorCode(again)).toBe("run_ended");
    const late = await send(workflowId, "signal", "approve", { payload: { approvedBy: "too late" } });
    expect(late.status).toBe(409);
  });

  it("terminate is immediate, keeps its reason, and is 404 on a finished run (as Output)", async () => {
    const workflowId = await startApproval("to be terminated");
    const res = await postJson(`/workflow/${workflowId}/terminate`, { reason: "changed my mind" });
    expect(res.status).toBe(200);
    const result = await finalResult(workflowId);
    expect(result).toMatchObject({ status: "terminated", error: "changed my mind" });
    const trace = await eventually(async () => {
      const r = await api(`/workflow/${workflowId}/trace-log`);
      return r.status === 200 && ((await r.json()) as Trace);
    });
    expect(trace.data.children).toEqual([]); // no cleanup on terminate

    const again = await postJson(`/workflow/${workflowId}/terminate`, {});
    expect(again.status).toBe(404);
    expect(await errorCode(again)).toBe("run_ended");
    const tooLong = await postJson(`/workflow/${await startApproval("reason check")}/terminate`, { reason: "x".repeat(1001) });
    expect(tooLong.status).toBe(400);
  });
});

describe("catalog, runs, history and trace log", () => {
  it("the catalog shows input and output JSON Schemas for every example", async () => {
    const res = await api("/workflow/catalog");
    expect(res.status).toBe(200);
    const { workflows } = (await res.json()) as {
      workflows: Array<{
        name: string;
        inputSchema: { type: string; properties: Record<string, unknown> };
        outputSchema: object;
        signals: string[];
      }>;
    };
    expect(workflows.map((w) => w.name).sort()).toEqual([
      "always_fails",
      "approval",
      "company_research",
      "flaky_step",
      "hello",
      "summarize_url",
      "two_steps",
    ]);
    for (const w of workflows) {
      expect(w.inputSchema.type).toBe("object");
      expect(w.outputSchema).toBeTypeOf("object");
    }
    expect(workflows.find((w) => w.name === "hello")!.inputSchema.properties).toHaveProperty("name");
    expect(workflows.find((w) => w.name === "approval")!.signals).toEqual(["approve", "resume"]);
  });

  it("a start with a wrong input type gets 400 naming the field", async () => {
    const res = await postJson("/workflow/start", { workflowName: "approval", input: { request: 7 } });
    expect(res.status).toBe(400);
    expect(((await res.json()) as OutputErrorBody).issues?.map((i) => i.path)).toContain("input.request");
  });

  it("GET /workflow/runs lists recent runs newest first, with a limit", async () => {
    const first = ((await (await postJson("/workflow/run", { workflowName: "hello", input: { name: "one" } })).json()) as ResultPayload)
      .workflowId;
    const second = ((await (await postJson("/workflow/run", { workflowName: "hello", input: { name: "two" } })).json()) as ResultPayload)
      .workflowId;
    const res = await api("/workflow/runs?limit=2");
    const { runs } = (await res.json()) as { runs: Array<{ workflowId: string; status: string }> };
    expect(runs.map((r) => r.workflowId)).toEqual([second, first]);
    expect(runs[0]!.status).toBe("completed");
    expect((await api("/workflow/runs?limit=0")).status).toBe(400);
    expect((await api("/workflow/runs?limit=1001")).status).toBe(400);
  });

  it("GET /workflow/:id/history pages through the run's history", async () => {
    const { workflowId } = (await (
      await postJson("/workflow/run", { workflowName: "two_steps", input: { text: "page me" } })
    ).json()) as ResultPayload;
    const all: number[] = [];
    let token: string | null = null;
    await eventually(async () => {
      const r = (await (await api(`/workflow/${workflowId}/history`)).json()) as { workflow: { closed: boolean } | null };
      return r.workflow?.closed;
    });
    do {
      const res = await api(`/workflow/${workflowId}/history?pageSize=5${token ? `&pageToken=${encodeURIComponent(token)}` : ""}`);
      expect(res.status).toBe(200);
      const page = (await res.json()) as { events: Array<{ eventId: string }>; nextPageToken: string | null };
      all.push(...page.events.map((e) => Number(e.eventId)));
      token = page.nextPageToken;
    } while (token);
    expect(all).toEqual(Array.from({ length: all.length }, (_, i) => i + 1));
    expect(all.length).toBeGreaterThan(10);
    expect((await api(`/workflow/${workflowId}/history?pageSize=0`)).status).toBe(400);
  });

  it("trace-log of a running run is 424 run_not_finished; of an unknown run 404", async () => {
    const workflowId = await startApproval("still running");
    const res = await api(`/workflow/${workflowId}/trace-log`);
    expect(res.status).toBe(424);
    expect(await errorCode(res)).toBe("run_not_finished");
    expect((await api(`/workflow/hello-${crypto.randomUUID()}/trace-log`)).status).toBe(404);
    await api(`/workflow/${workflowId}/terminate`, { method: "POST" });
  });

  it("the trace log of two_steps has both steps with inputs, outputs and timings", async () => {
    const { workflowId } = (await (
      await postJson("/workflow/run", { workflowName: "two_steps", input: { text: "trace me" } })
    ).json()) as ResultPayload;
    const trace = await eventually(async () => {
      const r = await api(`/workflow/${workflowId}/trace-log`);
      return r.status === 200 && ((await r.json()) as Trace);
    });
    expect(trace.data.children.map((s) => [s.name, s.status, s.output])).toEqual([
      ["countWords", "completed", { text: "trace me", words: 2 }],
      ["shout", "completed", "TRACE ME"],
    ]);
  });
});
