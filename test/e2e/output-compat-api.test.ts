/**
 * Output compatibility, through the whole stack: each route of the Workflow API is driven with
 * the request shapes Output's clients send, and each answer is checked against schemas written
 * from Output's own contract (growthxai/output `api/openapi.json`, `api/src/index.js`,
 * `api/src/middleware/error_handler.js`, `api/src/clients/errors.js`), not from Outrider's code.
 * Outrider's extra fields are allowed (the schemas are not strict), missing or mistyped ones fail.
 */
import { Client, Connection } from "@temporalio/client";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { z } from "zod";
import { api, eventually, queryD1 } from "./helpers.ts";

// ---- Output's contract, as its openapi.json and handlers describe it ------------------------
/** ErrorResponse: `{error: <error class name>, message, workflowId?}` (error_handler.js). */
const OutputError = z.object({ error: z.string(), message: z.string(), workflowId: z.string().nullish() });
/** ValidationErrorResponse: a zod failure. */
const ValidationError = OutputError.extend({ error: z.literal("ValidationError"), issues: z.array(z.unknown()).optional() });
const namedError = (name: string) => OutputError.extend({ error: z.literal(name) });
/** POST /workflow/start (start.js): `{workflowId, runId}`. */
const StartResponse = z.object({ workflowId: z.string(), runId: z.string().nullable() });
/** TraceInfo: `{destinations: {local, remote}}`, both required, both nullable. */
const TraceInfo = z.object({ destinations: z.object({ local: z.string().nullable(), remote: z.string().nullable() }) });
const TERMINAL = ["completed", "failed", "canceled", "cancelled", "terminated", "timed_out", "continued", "continued_as_new"] as const;
/** GET /workflow/:id/result and POST /workflow/run: the (V1) result of a closed run. */
const ResultResponse = z.object({
  workflowId: z.string(),
  runId: z.string().nullable(),
  input: z.unknown(),
  output: z.unknown(),
  trace: TraceInfo.nullable(),
  status: z.enum(TERMINAL),
  error: z.union([z.string(), z.object({ message: z.string() })]).nullable(),
});
/** GET /workflow/:id/status (get_status.js): times are epoch ms, '' when absent. */
const epochOrEmpty = z.union([z.number().int().positive(), z.literal("")]);
const StatusResponse = z.object({
  workflowId: z.string(),
  runId: z.string().nullable(),
  status: z.enum([
    "canceled",
    "cancelled",
    "completed",
    "continued_as_new",
    "failed",
    "running",
    "terminated",
    "timed_out",
    "unspecified",
    "scheduled",
  ]),
  startedAt: epochOrEmpty,
  completedAt: epochOrEmpty,
});
/** GET /workflow/:id/input (get_input.js). */
const InputResponse = z.object({ workflowId: z.string(), runId: z.string().nullable(), input: z.unknown() });
/** PATCH stop (workflow_run.js, stop.js) and POST terminate. */
const StopResponse = z.object({ workflowId: z.string(), runId: z.string().nullable() });
const TerminateResponse = StopResponse.extend({ terminated: z.literal(true) });
/** Workflow (the catalog's entries) and the catalog. */
const CatalogResponse = z.object({
  workflows: z.array(
    z.object({
      name: z.string(),
      description: z.string().optional(),
      path: z.string().optional(),
      inputSchema: z.record(z.string(), z.unknown()).optional(),
      outputSchema: z.record(z.string(), z.unknown()).optional(),
      aliases: z.array(z.string()).optional(),
    }),
  ),
});
/** WorkflowRunsResponse (list_runs.js): ISO times. */
const RunsResponse = z.object({
  runs: z.array(
    z.object({
      workflowId: z.string(),
      runId: z.string().nullable().optional(),
      workflowType: z.string(),
      status: z.string(),
      startedAt: z.iso.datetime(),
      completedAt: z.iso.datetime().nullable(),
    }),
  ),
  count: z.number().int(),
});
// ----------------------------------------------------------------------------------------------

/** Output's CLI sends the raw token as Basic credentials (sdk/cli/src/api/http_client.ts). */
const outputAuth = () => ({ authorization: `Basic ${inject("apiKey")}` });
const call = (method: string, path: string, body?: unknown) =>
  api(path, {
    key: null,
    method,
    headers: { ...outputAuth(), ...(body === undefined ? {} : { "content-type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });

async function expectShape<T extends z.ZodType>(res: Response, status: number, schema: T): Promise<z.infer<T>> {
  const text = await res.text();
  expect(res.status, text).toBe(status);
  const parsed = schema.safeParse(JSON.parse(text));
  expect(parsed.success, `${text}\n${parsed.error?.message ?? ""}`).toBe(true);
  return parsed.data as z.infer<T>;
}

/** A nanoid-shaped id, as Output mints them (21 chars of A-Za-z0-9_-). */
const nanoidLike = () =>
  btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))))
    .replace(/[+/=]/g, "_")
    .slice(0, 21);

async function resultWhenClosed(workflowId: string, path = `/workflow/${workflowId}/result`) {
  return eventually(async () => {
    const res = await call("GET", path);
    if (res.status === 424) {
      await expectShape(res, 424, namedError("WorkflowNotCompletedError"));
      return null;
    }
    return expectShape(res, 200, ResultResponse);
  }, 60_000);
}

async function startApproval(request: string) {
  return expectShape(await call("POST", "/workflow/start", { workflowName: "approval", input: { request } }), 200, StartResponse);
}

describe("Output's routes and shapes through the whole stack", () => {
  let temporal: Client;
  beforeAll(async () => {
    temporal = new Client({ connection: await Connection.connect({ address: inject("temporalAddress") }) });
  });
  afterAll(async () => temporal?.connection.close());

  it("catalog: GET /workflow/catalog and /workflow/catalog/outrider; an unknown catalog is a 404 error body", async () => {
    const all = await expectShape(await call("GET", "/workflow/catalog"), 200, CatalogResponse);
    expect(all.workflows.map((w) => w.name)).toContain("hello");
    const byId = await expectShape(await call("GET", "/workflow/catalog/outrider"), 200, CatalogResponse);
    expect(byId.workflows.map((w) => w.name).sort()).toEqual(all.workflows.map((w) => w.name).sort());
    await expectShape(await call("GET", "/workflow/catalog/main"), 404, OutputError);
  });

  it("start with the caller's workflowId and catalog, then status, result, input (unpinned and pinned)", async () => {
    const workflowId = nanoidLike();
    const started = await expectShape(
      await call("POST", "/workflow/start", { workflowName: "hello", input: { name: "Output" }, workflowId, catalog: "outrider" }),
      200,
      StartResponse,
    );
    expect(started.workflowId).toBe(workflowId);
    const runId = started.runId!;
    const result = await resultWhenClosed(workflowId);
    expect(result).toMatchObject({ workflowId, runId, status: "completed", output: { greeting: "Hello, Output!" }, error: null });
    expect(result.trace?.destinations.remote).toBeTruthy();

    const status = await expectShape(await call("GET", `/workflow/${workflowId}/status`), 200, StatusResponse);
    expect(status).toMatchObject({ workflowId, runId, status: "completed" });
    expect(status.completedAt as number).toBeGreaterThanOrEqual(status.startedAt as number);
    // What Output's CLI does with them (sdk/cli: new Date(x).toISOString()).
    expect(() => new Date(status.startedAt).toISOString()).not.toThrow();

    for (const base of [`/workflow/${workflowId}`, `/workflow/${workflowId}/runs/${runId}`]) {
      expect(await expectShape(await call("GET", `${base}/input`), 200, InputResponse)).toEqual({
        workflowId,
        runId,
        input: { name: "Output" },
      });
      expect((await expectShape(await call("GET", `${base}/status`), 200, StatusResponse)).runId).toBe(runId);
      expect((await expectShape(await call("GET", `${base}/result`), 200, ResultResponse)).runId).toBe(runId);
    }
    await expectShape(await call("GET", `/workflow/${workflowId}/runs/not-a-uuid/status`), 400, ValidationError);
    await expectShape(
      await call("GET", `/workflow/${workflowId}/runs/${crypto.randomUUID()}/result`),
      404,
      namedError("WorkflowNotFoundError"),
    );
    await expectShape(await call("GET", `/workflow/${nanoidLike()}/status`), 404, namedError("WorkflowNotFoundError"));
  });

  it("concurrent starts with one workflowId: exactly one run, the others 409", async () => {
    const workflowId = `order:${crypto.randomUUID()}`;
    const responses = await Promise.all(
      Array.from({ length: 6 }, () => call("POST", "/workflow/start", { workflowName: "hello", input: { name: "once" }, workflowId })),
    );
    const statuses = responses.map((r) => r.status).sort();
    expect(statuses).toEqual([200, 409, 409, 409, 409, 409]);
    const winner = responses.find((r) => r.status === 200)!;
    const { runId } = await expectShape(winner, 200, StartResponse);
    for (const loser of responses.filter((r) => r.status === 409)) {
      const body = await expectShape(loser, 409, OutputError);
      expect(body.workflowId).toBe(workflowId);
    }
    await resultWhenClosed(encodeURIComponent(workflowId));
    // Temporal saw one execution of that id, the one the winner started (visibility lags a little).
    const executions = await eventually(async () => {
      const found: string[] = [];
      for await (const wf of temporal.workflow.list({ query: `WorkflowId = '${workflowId}'` })) found.push(wf.runId);
      return found.length > 0 && found;
    });
    expect(executions).toEqual([runId]);
    expect(queryD1<{ n: number }>(`SELECT COUNT(*) AS n FROM runs WHERE temporal_workflow_id = '${workflowId}'`)[0]!.n).toBe(1);
    // A start after the run ended is 409 too: one id names one run.
    await expectShape(
      await call("POST", "/workflow/start", { workflowName: "hello", input: { name: "again" }, workflowId }),
      409,
      OutputError,
    );
  });

  it("run: the body Output's CLI sends gives the result; an unknown workflow is 424 UnsupportedWorkflowError", async () => {
    const body = await expectShape(
      await call("POST", "/workflow/run", { workflowName: "hello", input: { name: "CLI" } }),
      200,
      ResultResponse,
    );
    expect(body).toMatchObject({ status: "completed", output: { greeting: "Hello, CLI!" } });
    await expectShape(
      await call("POST", "/workflow/run", { workflowName: "no_such_workflow", input: {} }),
      424,
      namedError("UnsupportedWorkflowError"),
    );
    await expectShape(
      await call("POST", "/workflow/run", { workflowName: "hello", input: { name: "x" }, catalog: "main" }),
      404,
      OutputError,
    );
    await expectShape(await call("POST", "/workflow/run", { workflowName: 5 }), 400, ValidationError);
  });

  it("run whose wait runs out: 408 WorkflowExecutionTimedOutError with the workflowId (timeout as a string, as Output coerces it)", async () => {
    const res = await call("POST", "/workflow/run", {
      workflowName: "two_steps",
      input: { text: "wait for me", pauseMs: 3_000 },
      timeout: "300",
    });
    const body = await expectShape(res, 408, namedError("WorkflowExecutionTimedOutError"));
    expect(body.workflowId).toEqual(expect.any(String));
    // The run goes on; meanwhile its result is 424, then 200.
    await expectShape(await call("GET", `/workflow/${body.workflowId}/result`), 424, namedError("WorkflowNotCompletedError"));
    expect((await resultWhenClosed(body.workflowId!)).output).toEqual({ words: 3, shouted: "WAIT FOR ME" });
  });

  it("signal, query, update and feedback take {payload}; query and update answer with the handler's result as is", async () => {
    const { workflowId } = await startApproval("compat handlers");
    const progress = await call("POST", `/workflow/${workflowId}/query/progress`, { payload: {} });
    expect(await expectShape(progress, 200, z.object({ stage: z.string(), priority: z.number() }))).toMatchObject({
      stage: "waiting_for_approval",
      priority: 3,
    });
    const updated = await call("POST", `/workflow/${workflowId}/update/setPriority`, { payload: { priority: 2 } });
    expect(await expectShape(updated, 200, z.object({ priority: z.number() }))).toEqual({ priority: 2 });
    // Output's feedback: signal `resume` with the payload.
    expect((await call("POST", `/workflow/${workflowId}/feedback`, { payload: { approvedBy: "Ada" } })).status).toBe(200);
    const result = await resultWhenClosed(workflowId);
    expect(result.output).toEqual({ request: "compat handlers", approvedBy: "Ada", priority: 2 });

    const other = await startApproval("compat signal");
    expect((await call("POST", `/workflow/${other.workflowId}/signal/approve`, { payload: { approvedBy: "Grace" } })).status).toBe(200);
    expect((await resultWhenClosed(other.workflowId)).output).toMatchObject({ approvedBy: "Grace" });
    await expectShape(await call("POST", `/workflow/${other.workflowId}/signal/approve`, { payload: [1] }), 400, ValidationError);
  });

  it("stop and terminate: 200 with Output's bodies, deprecation headers on the unpinned routes, 404 once ended", async () => {
    const a = await startApproval("compat stop");
    const stop = await call("PATCH", `/workflow/${a.workflowId}/stop`);
    expect(await expectShape(stop, 200, StopResponse)).toMatchObject({ workflowId: a.workflowId, runId: a.runId });
    expect(stop.headers.get("deprecation")).toBe("true");
    expect(stop.headers.get("sunset")).toBeTruthy();
    expect(stop.headers.get("link")).toContain('rel="successor-version"');
    expect((await resultWhenClosed(a.workflowId)).status).toMatch(/^cancell?ed$/);
    await expectShape(await call("PATCH", `/workflow/${a.workflowId}/stop`), 404, namedError("WorkflowNotFoundError"));

    const b = await startApproval("compat pinned stop");
    const pinnedStop = await call("PATCH", `/workflow/${b.workflowId}/runs/${b.runId}/stop`);
    expect(await expectShape(pinnedStop, 200, StopResponse)).toMatchObject({ workflowId: b.workflowId, runId: b.runId });
    expect(pinnedStop.headers.get("deprecation")).toBeNull();

    const c = await startApproval("compat terminate");
    const terminate = await call("POST", `/workflow/${c.workflowId}/terminate`, { reason: "compat" });
    expect(await expectShape(terminate, 200, TerminateResponse)).toMatchObject({ workflowId: c.workflowId, runId: c.runId });
    expect(terminate.headers.get("link")).toContain("/terminate>");
    expect((await resultWhenClosed(c.workflowId)).status).toBe("terminated");
    await expectShape(await call("POST", `/workflow/${c.workflowId}/terminate`, {}), 404, namedError("WorkflowNotFoundError"));

    const d = await startApproval("compat pinned terminate");
    await expectShape(await call("POST", `/workflow/${d.workflowId}/runs/${d.runId}/terminate`, {}), 200, TerminateResponse);
    await expectShape(await call("POST", `/workflow/${d.workflowId}/runs/${d.runId}/terminate`, {}), 404, OutputError);
  });

  it("runs list: Output's fields and count, the workflowType filter done by the server, limit up to 1000", async () => {
    const { workflowId } = await expectShape(
      await call("POST", "/workflow/run", { workflowName: "hello", input: { name: "listed" } }),
      200,
      ResultResponse,
    );
    const list = await expectShape(await call("GET", "/workflow/runs?workflowType=hello&limit=1000"), 200, RunsResponse);
    expect(list.count).toBe(list.runs.length);
    expect(list.runs.every((r) => r.workflowType === "hello")).toBe(true);
    expect(list.runs.find((r) => r.workflowId === workflowId)).toMatchObject({ status: "completed" });
    const byDefault = await expectShape(await call("GET", "/workflow/runs"), 200, RunsResponse);
    expect(byDefault.count).toBeLessThanOrEqual(100);
    expect(new Set(byDefault.runs.map((r) => r.workflowType)).size).toBeGreaterThan(1);
    await expectShape(await call("GET", "/workflow/runs?limit=1001"), 400, ValidationError);
  });

  it("probes and auth: /ready 200 without a key, /heartbeat 204; a 401 body has a string error", async () => {
    expect((await api("/ready", { key: null })).status).toBe(200);
    const beat = await call("POST", "/heartbeat");
    expect(beat.status).toBe(204);
    const anonymous = await api("/workflow/catalog", { key: null });
    await expectShape(anonymous, 401, OutputError);
  });
});
