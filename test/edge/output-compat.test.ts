/**
 * The Workflow API's Output contract at the edge (no host: HOST_URL is a closed port): the error
 * envelope, the new routes' shapes and validation, hostile workflow ids, and tenant isolation.
 * test/e2e/output-compat-api.test.ts drives the same routes against the whole stack.
 */
import { env } from "cloudflare:workers";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import { HOST_CALL_WAIT_MS, HOST_READY_WAIT_MS, INTERACT_WAIT_MS } from "../../src/host-client.ts";
import { HOST_PATHS } from "../../src/shared/host-api.ts";
import { forgetReadiness } from "../../src/routes/probes.ts";
import { interceptD1InPlace } from "../support/d1-intercept.ts";
import { call, type ErrorBody, type OutputErrorBody, postJson, preflight, scriptHost, seedCatalog, seedOrganization } from "./helpers.ts";
import { closeEvent, createRunningRun, finishedEvent, historyEvent, push, runAcceptedWhileHostIsDown } from "./stream-helpers.ts";

type Org = Awaited<ReturnType<typeof seedOrganization>>;

const get = (path: string, key: string, headers: Record<string, string> = {}) =>
  call(path, { headers: { authorization: `Bearer ${key}`, ...headers } });
/** A call from a browser page on a CORS_ORIGINS origin (test/edge/vitest.config.ts), as Output's clients and ours make. */
const send = (method: string, path: string, key: string, body?: unknown) =>
  call(path, {
    method,
    headers: {
      authorization: `Bearer ${key}`,
      origin: "https://app.example",
      ...(body === undefined ? {} : { "content-type": "application/json" }),
    },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });

async function outputError(res: Response): Promise<OutputErrorBody> {
  expect(res.headers.get("content-type")).toContain("application/json");
  const body = (await res.json()) as OutputErrorBody;
  expect(typeof body.error).toBe("string");
  expect(typeof body.message).toBe("string");
  expect(body.requestId).toBe(res.headers.get("x-request-id"));
  return body;
}

async function runRows(organizationId: string): Promise<number> {
  return (await env.DB.prepare("SELECT COUNT(*) AS n FROM runs WHERE organization_id = ?").bind(organizationId).first<{ n: number }>())!.n;
}

async function finishedRun(org: Org, name = "approval", workflowId?: string) {
  const run = await createRunningRun(org.organizationId, name, workflowId);
  await push(encodeURIComponent(run.workflowId), [historyEvent(run.runId, 1), closeEvent(run.runId, 2), finishedEvent(run.runId)]);
  return run;
}

describe("Output's error envelope", () => {
  let org: Org;
  beforeAll(async () => {
    await seedCatalog();
    org = await seedOrganization();
  });

  it("on /workflow: error is Output's name, code and requestId ride along, workflowId when the error is a run's", async () => {
    const missing = await get("/workflow/no-such-run/status", org.key);
    expect(missing.status).toBe(404);
    expect(await outputError(missing)).toMatchObject({ error: "WorkflowNotFoundError", code: "run_not_found", workflowId: "no-such-run" });

    const bad = await postJson("/workflow/start", { workflowName: 7 }, org.key);
    expect(bad.status).toBe(400);
    const body = await outputError(bad);
    expect(body).toMatchObject({ error: "ValidationError", code: "invalid_request" });
    expect(body.workflowId).toBeUndefined();
    expect(body.issues?.[0]?.path).toBe("workflowName");

    const unknownRoute = await get("/workflow/no-such-run/nothing-here", org.key);
    expect(unknownRoute.status).toBe(404);
    expect((await outputError(unknownRoute)).error).toBe("RouteNotFoundError");
  });

  it("a 401 on /workflow has a string error (Output's CLI prints it instead of [object Object])", async () => {
    for (const headers of [{}, { authorization: "Basic wrong" }] as Array<Record<string, string>>) {
      const res = await call("/workflow/catalog", { headers });
      expect(res.status).toBe(401);
      expect(await outputError(res)).toMatchObject({ error: "UnauthorizedError", code: "unauthorized" });
    }
    // The CLI prints the message: without a key it names what the CLI can set, not only a Bearer header it cannot send.
    expect((await outputError(await call("/workflow/catalog"))).message).toContain("OUTPUT_API_AUTH_TOKEN");
  });

  it("the other families keep their envelope", async () => {
    const adminRes = await call("/admin/v1/organizations", { headers: { authorization: "Bearer wrong" } });
    expect(adminRes.status).toBe(401);
    expect(((await adminRes.json()) as ErrorBody).error.code).toBe("unauthorized");
    const published = await postJson("/api/v1/run/wf_nope", {}, org.key);
    expect(published.status).toBe(404);
    expect(((await published.json()) as ErrorBody).error.code).toBe("workflow_not_found");
    expect(((await (await call("/nope")).json()) as ErrorBody).error.code).toBe("route_not_found");
  });
});

describe("start and run: Output's request fields", () => {
  let org: Org;
  beforeAll(async () => {
    await seedCatalog();
    org = await seedOrganization();
  });

  it("an unknown catalog (or taskQueue) is 404 CatalogNotFoundError and starts nothing; catalog wins over taskQueue", async () => {
    for (const extra of [{ catalog: "main" }, { taskQueue: "main" }, { catalog: "main", taskQueue: "outrider" }]) {
      const res = await postJson("/workflow/start", { workflowName: "hello", input: { name: "x" }, ...extra }, org.key);
      expect(res.status).toBe(404);
      expect(await outputError(res)).toMatchObject({ error: "CatalogNotFoundError", code: "catalog_not_found" });
    }
    // Outrider's own catalog passes the check (and then meets the missing host: the run is
    // accepted, its DO starts it once the host answers, and the wait for that runs out: 408).
    const ours = await postJson(
      "/workflow/run",
      { workflowName: "hello", input: { name: "x" }, catalog: "outrider", taskQueue: "main", timeout: 300 },
      org.key,
    );
    expect(ours.status).toBe(408);
    expect(await ours.json()).toMatchObject({ error: "WorkflowExecutionTimedOutError", code: "wait_timed_out" });
    const bad = await postJson("/workflow/start", { workflowName: "hello", catalog: "no/slashes" }, org.key);
    expect(bad.status).toBe(400);
    expect((await outputError(bad)).issues?.[0]?.path).toBe("catalog");
    expect(await runRows(org.organizationId)).toBe(1); // only the accepted run with Outrider's own catalog
  });

  it("searchAttributes (the CLI's --search-attributes) is 400 naming the field, not silently dropped; nothing is written", async () => {
    const before = await runRows(org.organizationId);
    for (const path of ["/workflow/start", "/workflow/run"]) {
      const res = await postJson(path, { workflowName: "hello", input: { name: "x" }, searchAttributes: { ClientId: "acme" } }, org.key);
      expect(res.status, path).toBe(400);
      const body = await outputError(res);
      expect([body.error, body.code, body.issues?.[0]?.path]).toEqual(["ValidationError", "invalid_request", "searchAttributes"]);
      expect(body.issues?.[0]?.message).toMatch(/search attributes are not supported/);
    }
    expect(await runRows(org.organizationId)).toBe(before);
    // null or {} ask for none: accepted.
    for (const searchAttributes of [null, {}]) {
      const res = await postJson("/workflow/start", { workflowName: "hello", input: { name: "x" }, searchAttributes }, org.key);
      expect(res.status).toBe(200);
    }
  });

  it("timeout is coerced from a string, as Output; below 250 ms is 400", async () => {
    const started = Date.now();
    const coerced = await postJson("/workflow/run", { workflowName: "hello", input: { name: "x" }, timeout: "1000" }, org.key);
    // Past validation: accepted while the host is missing here, waited for a second, 408.
    expect(coerced.status).toBe(408);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    const tooShort = await postJson("/workflow/run", { workflowName: "hello", input: { name: "x" }, timeout: "249" }, org.key);
    expect(tooShort.status).toBe(400);
    expect((await outputError(tooShort)).issues?.[0]?.path).toBe("timeout");
  });

  it("a workflowId that is taken is 409 WorkflowExecutionAlreadyStartedError: no second row, the first run untouched", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId, "hello", `order-${crypto.randomUUID()}`);
    const again = await postJson("/workflow/start", { workflowName: "hello", input: { name: "x" }, workflowId }, org.key);
    expect(again.status).toBe(409);
    expect(await outputError(again)).toMatchObject({
      error: "WorkflowExecutionAlreadyStartedError",
      code: "workflow_id_in_use",
      workflowId,
    });
    const rows = await env.DB.prepare("SELECT temporal_run_id AS runId FROM runs WHERE temporal_workflow_id = ?")
      .bind(workflowId)
      .all<{ runId: string }>();
    expect(rows.results).toEqual([{ runId }]);
  });

  it("hostile workflowIds in the body are 400 before anything is written", async () => {
    const before = await runRows(org.organizationId);
    for (const workflowId of ["../etc/passwd", "a/b", "x".repeat(257), "", "..", "catalog", "runs", "héllo", "a b", "a\u0000b", "%2F"]) {
      const res = await postJson("/workflow/start", { workflowName: "hello", input: { name: "x" }, workflowId }, org.key);
      expect(res.status, JSON.stringify(workflowId)).toBe(400);
      expect(await outputError(res)).toMatchObject({ error: "ValidationError", code: "invalid_request" });
    }
    expect(await runRows(org.organizationId)).toBe(before);
  });
});

describe("run routes: shapes, pinned forms, hostile ids", () => {
  let org: Org;
  let intruder: Org;
  beforeAll(async () => {
    await seedCatalog();
    org = await seedOrganization("owner");
    intruder = await seedOrganization("intruder");
  });

  it("status: epoch-ms startedAt/completedAt ('' when absent), our ISO fields as extras", async () => {
    const running = await createRunningRun(org.organizationId);
    const res = await get(`/workflow/${running.workflowId}/status`, org.key);
    expect(res.status).toBe(200);
    const body = (await res.json()) as Record<string, unknown>;
    expect(body).toMatchObject({ workflowId: running.workflowId, runId: running.runId, status: "running", completedAt: "" });
    expect(typeof body.startedAt).toBe("number");
    expect(typeof body.createdAt).toBe("string");

    const done = await finishedRun(org);
    const pinned = (await (await get(`/workflow/${done.workflowId}/runs/${done.runId}/status`, org.key)).json()) as Record<string, unknown>;
    expect(pinned).toMatchObject({ workflowId: done.workflowId, runId: done.runId, status: "completed" });
    expect(pinned.completedAt as number).toBeGreaterThanOrEqual(pinned.startedAt as number);
  });

  it("result: 424 WorkflowNotCompletedError while running; once ended, trace.destinations {local: null, remote}", async () => {
    const running = await createRunningRun(org.organizationId);
    for (const path of [`/workflow/${running.workflowId}/result`, `/workflow/${running.workflowId}/runs/${running.runId}/result`]) {
      const res = await get(path, org.key);
      expect(res.status).toBe(424);
      expect(await outputError(res)).toMatchObject({
        error: "WorkflowNotCompletedError",
        code: "run_not_finished",
        workflowId: running.workflowId,
      });
    }
    const done = await finishedRun(org);
    const body = (await (await get(`/workflow/${done.workflowId}/result`, org.key)).json()) as {
      trace: { destinations: { local: unknown; remote: string } };
    };
    expect(body.trace.destinations.local).toBeNull();
    expect(body.trace.destinations.remote).toContain(done.workflowId);
  });

  it("result of a run refused before Temporal started it: failed, with trace null (Output's when no trace was kept), not a trace key that names no object", async () => {
    // Output builds `trace` from what the run left, null when nothing (api/src/clients/temporal/workflow_result.js);
    // its clients read trace.destinations.remote as where the trace is (sdk/cli/src/api/generated/api.ts TraceInfoV1),
    // and GET /trace-log of such a run is 404 TraceNotAvailableError.
    const { workflowId, refuseForGood, restore } = await runAcceptedWhileHostIsDown(org.organizationId);
    try {
      await refuseForGood();
      const res = await get(`/workflow/${workflowId}/result`, org.key);
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ workflowId, runId: null, status: "failed", trace: null });
      expect((await get(`/workflow/${workflowId}/trace-log`, org.key)).status).toBe(404);
    } finally {
      restore();
    }
  });

  it("result: Output's V1 errorDetails for a run that did not complete (pinned too), null for one that did, the message alone for one recorded without", async () => {
    const details = {
      message: "Foo",
      name: "Error",
      retryable: true,
      activityId: "countWords",
      cause: {
        name: "WorkflowFailedError",
        message: "Workflow execution failed",
        cause: { name: "ActivityFailure", message: "Activity task failed" },
      },
    };
    const end = async (data: Record<string, unknown>) => {
      const run = await createRunningRun(org.organizationId);
      await push(run.workflowId, [
        historyEvent(run.runId, 1),
        closeEvent(run.runId, 2),
        {
          sourceKey: `run:${run.runId}:finished`,
          type: "run.finished",
          at: new Date().toISOString(),
          data: { runId: run.runId, output: null, ...data },
        },
      ]);
      return run;
    };
    const resultOf = async (path: string) =>
      (await (await get(path, org.key)).json()) as { status: string; error: unknown; errorDetails: unknown };
    const failed = await end({ status: "failed", error: "Foo", errorDetails: details });
    for (const path of [`/workflow/${failed.workflowId}/result`, `/workflow/${failed.workflowId}/runs/${failed.runId}/result`]) {
      expect(await resultOf(path), path).toMatchObject({ status: "failed", error: "Foo", errorDetails: details });
    }
    const completed = await finishedRun(org);
    expect((await resultOf(`/workflow/${completed.workflowId}/result`)).errorDetails).toBeNull();
    const older = await end({ status: "terminated", error: "stopped by an operator" });
    expect((await resultOf(`/workflow/${older.workflowId}/result`)).errorDetails).toEqual({
      message: "stopped by an operator",
      name: null,
      retryable: null,
      activityId: null,
      cause: null,
    });
  });

  it("input, unpinned and pinned; a rid that is not a UUID is 400, another run's rid 404", async () => {
    const run = await createRunningRun(org.organizationId);
    for (const path of [`/workflow/${run.workflowId}/input`, `/workflow/${run.workflowId}/runs/${run.runId}/input`]) {
      expect(await (await get(path, org.key)).json()).toEqual({ workflowId: run.workflowId, runId: run.runId, input: {} });
    }
    for (const suffix of ["status", "result", "input"]) {
      const notUuid = await get(`/workflow/${run.workflowId}/runs/not-a-uuid/${suffix}`, org.key);
      expect(notUuid.status).toBe(400);
      expect((await outputError(notUuid)).error).toBe("ValidationError");
      const other = await get(`/workflow/${run.workflowId}/runs/${crypto.randomUUID()}/${suffix}`, org.key);
      expect(other.status).toBe(404);
      expect((await outputError(other)).error).toBe("WorkflowNotFoundError");
    }
    const stop = await send("PATCH", `/workflow/${run.workflowId}/runs/not-a-uuid/stop`, org.key);
    expect(stop.status).toBe(400);
  });

  it("stop/terminate of a run that has ended: 404 (as Output), Deprecation/Sunset/Link on the unpinned routes only", async () => {
    const done = await finishedRun(org);
    const cases: Array<[string, string, string | null]> = [
      ["PATCH", `/workflow/${done.workflowId}/stop`, "stop"],
      ["POST", `/workflow/${done.workflowId}/terminate`, "terminate"],
      ["PATCH", `/workflow/${done.workflowId}/runs/${done.runId}/stop`, null],
      ["POST", `/workflow/${done.workflowId}/runs/${done.runId}/terminate`, null],
    ];
    for (const [method, path, successor] of cases) {
      const res = await send(method, path, org.key, method === "POST" ? { reason: "test" } : undefined);
      expect(res.status, path).toBe(404);
      expect(await outputError(res)).toMatchObject({ error: "WorkflowNotFoundError", code: "run_ended", workflowId: done.workflowId });
      if (successor) {
        expect(res.headers.get("deprecation")).toBe("true");
        expect(res.headers.get("sunset")).toBe("Thu, 16 Jul 2026 00:00:00 GMT");
        expect(res.headers.get("link")).toBe(`</workflow/{id}/runs/{rid}/${successor}>; rel="successor-version"`);
        // A browser page may read them too.
        const exposed =
          res.headers
            .get("access-control-expose-headers")
            ?.toLowerCase()
            .split(/\s*,\s*/) ?? [];
        expect(exposed).toEqual(expect.arrayContaining(["deprecation", "sunset", "link"]));
      } else {
        expect(res.headers.get("deprecation")).toBeNull();
      }
    }
    const badReason = await send("POST", `/workflow/${done.workflowId}/terminate`, org.key, { reason: 5 });
    expect(badReason.status).toBe(400);
  });

  it("a run accepted but not started in Temporal yet (its start being retried): stop, terminate, signal, query and reset are 409 run_not_started with Retry-After, not 404", async () => {
    const workflowId = `approval-${crypto.randomUUID()}`;
    const wf = await env.DB.prepare("SELECT id FROM workflows WHERE name = 'approval' AND organization_id IS NULL").first<{ id: string }>();
    await env.DB.prepare(
      "INSERT INTO runs (id, organization_id, workflow_id, workflow_name, temporal_workflow_id, status, input) VALUES (?, ?, ?, 'approval', ?, 'scheduled', '{}')",
    )
      .bind(crypto.randomUUID(), org.organizationId, wf!.id, workflowId)
      .run();
    // Temporal has no such workflow yet: the host's 404.
    const restore = scriptHost(() => Response.json({ error: { code: "run_not_found", message: "workflow not found" } }, { status: 404 }));
    try {
      for (const [method, path, body] of [
        ["PATCH", `/workflow/${workflowId}/stop`, undefined],
        ["POST", `/workflow/${workflowId}/terminate`, {}],
        ["POST", `/workflow/${workflowId}/signal/approve`, { payload: { approvedBy: "ada" } }],
        ["POST", `/workflow/${workflowId}/query/progress`, {}],
        ["POST", `/workflow/${workflowId}/feedback`, { payload: { approvedBy: "ada" } }],
        ["POST", `/workflow/${workflowId}/reset`, { stepName: "recordApproval" }],
      ] as Array<[string, string, unknown]>) {
        const res = await send(method, path, org.key, body);
        expect(res.status, path).toBe(409);
        expect(res.headers.get("retry-after"), path).toBe("5");
        expect(await outputError(res), path).toMatchObject({ error: "WorkflowNotStartedError", code: "run_not_started", workflowId });
      }
    } finally {
      restore();
    }
    // A run Temporal has (its run id known) that the host cannot find is still 404.
    const running = await createRunningRun(org.organizationId, "approval");
    const undo = scriptHost(() => Response.json({ error: { code: "run_not_found", message: "workflow not found" } }, { status: 404 }));
    try {
      const res = await send("PATCH", `/workflow/${running.workflowId}/stop`, org.key);
      expect([res.status, (await outputError(res)).code]).toEqual([404, "run_not_found"]);
    } finally {
      undo();
    }
  });

  it("a signal, update or feedback Temporal refused for the run (past its per-run limits) is 409 message_rejected with Temporal's words", async () => {
    const running = await createRunningRun(org.organizationId, "approval");
    const words = "Temporal refused the signal for this run: exceeded workflow execution limit for signal events";
    const restore = scriptHost(() => Response.json({ error: { code: "message_rejected", message: words } }, { status: 409 }));
    try {
      for (const [path, body] of [
        [`/workflow/${running.workflowId}/signal/approve`, { payload: {} }],
        [`/workflow/${running.workflowId}/update/setPriority`, { payload: { priority: 2 } }],
        [`/workflow/${running.workflowId}/feedback`, { payload: {} }],
      ] as Array<[string, unknown]>) {
        const res = await send("POST", path, org.key, body);
        expect(res.status, path).toBe(409);
        expect(res.headers.get("retry-after"), path).toBeNull();
        expect(await outputError(res), path).toMatchObject({
          error: "WorkflowMessageRejectedError",
          code: "message_rejected",
          message: words,
          workflowId: running.workflowId,
        });
      }
    } finally {
      restore();
    }
  });

  it("an update the run did not complete within the host's wait is 504 update_outcome_unknown, without Retry-After (a retry could apply it twice)", async () => {
    const running = await createRunningRun(org.organizationId, "approval");
    const words = 'the run did not complete the update "setPriority" within 60 s';
    const restore = scriptHost(() => Response.json({ error: { code: "update_outcome_unknown", message: words } }, { status: 504 }));
    try {
      const res = await send("POST", `/workflow/${running.workflowId}/update/setPriority`, org.key, { payload: { priority: 2 } });
      expect(res.status).toBe(504);
      expect(res.headers.get("retry-after")).toBeNull();
      expect(await outputError(res)).toMatchObject({
        error: "WorkflowUpdateOutcomeUnknownError",
        code: "update_outcome_unknown",
        message: words,
        workflowId: running.workflowId,
      });
    } finally {
      restore();
    }
  });

  it("a signal the host reports as maybe applied (Temporal's answer lost once it was sent) is 504 signal_outcome_unknown, without Retry-After", async () => {
    const running = await createRunningRun(org.organizationId, "approval");
    const words = 'Temporal could not be reached while the signal "approve" was on its way';
    const restore = scriptHost(() => Response.json({ error: { code: "signal_outcome_unknown", message: words } }, { status: 504 }));
    try {
      for (const path of [`/workflow/${running.workflowId}/signal/approve`, `/workflow/${running.workflowId}/feedback`]) {
        const res = await send("POST", path, org.key, { payload: { approvedBy: "ada" } });
        expect([path, res.status, res.headers.get("retry-after")]).toEqual([path, 504, null]);
        expect(await outputError(res)).toMatchObject({ code: "signal_outcome_unknown", message: words, workflowId: running.workflowId });
      }
    } finally {
      restore();
    }
  });

  it("a signal or update that may have reached the host without its answer reaching the edge is 504 *_outcome_unknown, never a retry; a query, or a call that never got there, is 503 with Retry-After", async () => {
    const running = await createRunningRun(org.organizationId, "approval");
    const calls = [
      ["signal", `/workflow/${running.workflowId}/signal/approve`, { payload: { ok: true } }],
      ["feedback", `/workflow/${running.workflowId}/feedback`, { payload: { ok: true } }],
      ["update", `/workflow/${running.workflowId}/update/setPriority`, { payload: { priority: 2 } }],
      ["query", `/workflow/${running.workflowId}/query/progress`, {}],
    ] as const;
    const unknownCode = { signal: "signal_outcome_unknown", feedback: "signal_outcome_unknown", update: "update_outcome_unknown" } as const;
    const refused = (message: string) => () => {
      throw new Error(message);
    };
    // mayBeApplied: a gateway's page after passing the call on (or not), a connection that failed.
    // Otherwise the call never got there (a gateway's 503 or 521, a refused connection): retrying works.
    const answers: Array<[string, () => Response | Promise<Response>, "mayBeApplied" | "neverSent"]> = [
      [
        "502 page",
        () => new Response("<html>502 Bad Gateway</html>", { status: 502, headers: { "content-type": "text/html" } }),
        "mayBeApplied",
      ],
      ["504 page", () => new Response("upstream timed out", { status: 504 }), "mayBeApplied"],
      ["524", () => new Response("", { status: 524 }), "mayBeApplied"],
      ["dropped", refused("Network connection lost."), "mayBeApplied"],
      ["503", () => new Response("", { status: 503 }), "neverSent"],
      ["521", () => new Response("", { status: 521 }), "neverSent"],
      ["refused", refused("connection refused"), "neverSent"],
    ];
    for (const [what, answer, outcome] of answers) {
      const restore = scriptHost(answer);
      try {
        for (const [kind, path, body] of calls) {
          const res = await send("POST", path, org.key, body);
          // A query reads only: its failures are retryable whatever they were.
          if (kind === "query" || outcome === "neverSent") {
            expect([what, kind, res.status, res.headers.get("retry-after")]).toEqual([what, kind, 503, "5"]);
            continue;
          }
          expect([what, kind, res.status, res.headers.get("retry-after")]).toEqual([what, kind, 504, null]);
          expect(await outputError(res)).toMatchObject({ code: unknownCode[kind], workflowId: running.workflowId });
        }
      } finally {
        restore();
      }
    }
  });

  it(
    "a host that takes a signal and never answers: after the edge's wait (INTERACT_WAIT_MS), 504 signal_outcome_unknown, not a request held open for good",
    async () => {
      const running = await createRunningRun(org.organizationId, "approval");
      let aborted = false;
      // Honours the edge's abort, as a real connection does; answers nothing before it.
      const restore = scriptHost(
        (request) =>
          new Promise<Response>((_, reject) =>
            request.signal.addEventListener("abort", () => {
              aborted = true;
              reject(request.signal.reason);
            }),
          ),
      );
      try {
        const began = Date.now();
        const res = await send("POST", `/workflow/${running.workflowId}/signal/approve`, org.key, { payload: {} });
        expect([res.status, res.headers.get("retry-after")]).toEqual([504, null]);
        expect(await outputError(res)).toMatchObject({ code: "signal_outcome_unknown" });
        expect(aborted).toBe(true);
        expect(Date.now() - began).toBeGreaterThanOrEqual(INTERACT_WAIT_MS.signal);
      } finally {
        restore();
      }
    },
    INTERACT_WAIT_MS.signal + 15_000,
  );

  it(
    "a host that takes a stop or terminate and never answers: after the edge's wait (HOST_CALL_WAIT_MS), 503 host_unavailable with Retry-After (asking again is harmless), not a request held open for good; a status read answers from the stored row",
    async () => {
      const running = await createRunningRun(org.organizationId, "approval");
      const aborted: string[] = [];
      // Honours the edge's abort, as a real connection does; answers nothing before it. Only this
      // run's calls: other test files' calls to the host (they share this isolate's fetch) meet the
      // closed port they expect.
      const restore = scriptHost((request, path) => {
        if (!path.includes(encodeURIComponent(running.workflowId))) return Promise.reject(new TypeError("connection refused"));
        return new Promise<Response>((_, reject) =>
          request.signal.addEventListener("abort", () => {
            aborted.push(path);
            reject(request.signal.reason);
          }),
        );
      });
      try {
        const began = Date.now();
        const [stop, terminate, status] = await Promise.all([
          send("PATCH", `/workflow/${running.workflowId}/stop`, org.key),
          send("POST", `/workflow/${running.workflowId}/terminate`, org.key, { reason: "stuck" }),
          get(`/workflow/${running.workflowId}/status`, org.key),
        ]);
        for (const [what, res] of [
          ["stop", stop],
          ["terminate", terminate],
        ] as const) {
          expect([what, res.status, res.headers.get("retry-after")]).toEqual([what, 503, "5"]);
          expect(await outputError(res)).toMatchObject({ code: "host_unavailable" });
        }
        // A read: the row as stored while the host does not answer (the settle's call gave up).
        expect(status.status).toBe(200);
        expect(await status.json()).toMatchObject({ workflowId: running.workflowId, runId: running.runId, status: "running" });
        expect(Date.now() - began).toBeGreaterThanOrEqual(HOST_CALL_WAIT_MS - 50);
        expect(aborted.sort()).toEqual(
          [HOST_PATHS.cancel(running.workflowId), HOST_PATHS.result(running.workflowId), HOST_PATHS.terminate(running.workflowId)].sort(),
        );
      } finally {
        restore();
      }
    },
    HOST_CALL_WAIT_MS + 15_000,
  );

  it("a query no worker answered within the host's wait is 504 query_timed_out with the host's words, not a 500 or an outage's 503", async () => {
    const running = await createRunningRun(org.organizationId, "approval");
    const words = 'no worker answered the query "progress" within 20 s';
    const restore = scriptHost(() => Response.json({ error: { code: "query_timed_out", message: words } }, { status: 504 }));
    try {
      const res = await send("POST", `/workflow/${running.workflowId}/query/progress`, org.key, {});
      expect(res.status).toBe(504);
      expect(res.headers.get("retry-after")).toBeNull();
      expect(await outputError(res)).toMatchObject({
        error: "WorkflowQueryTimedOutError",
        code: "query_timed_out",
        message: words,
        workflowId: running.workflowId,
      });
    } finally {
      restore();
    }
  });

  it("any id shape is addressable, URL-decoded; hostile ids are 400 or 404, never a crash or another run", async () => {
    const chosen = ["V1StGXR8_Z5jdHi6B-myT", "order:42@acme", "__proto__", "constructor", "a.b=c+d~e"];
    for (const id of chosen) {
      const run = await createRunningRun(
        org.organizationId,
        "two_steps",
        id === "__proto__" || id === "constructor" ? `${id}-${crypto.randomUUID().slice(0, 8)}` : id,
      );
      const res = await get(`/workflow/${encodeURIComponent(run.workflowId)}/status`, org.key);
      expect(res.status, id).toBe(200);
      expect(((await res.json()) as { workflowId: string }).workflowId).toBe(run.workflowId);
    }
    // __proto__ and friends as ids nobody started: plain 404s.
    for (const id of ["__proto__", "constructor", "prototype", "hasOwnProperty"]) {
      const res = await get(`/workflow/${id}/status`, org.key);
      expect(res.status, id).toBe(404);
      expect((await outputError(res)).workflowId).toBe(id);
    }
    // Encoded slashes, dots, NULs, non-ASCII, very long, a fixed route's name: 400 ValidationError.
    // (`/workflow/catalog/<x>` is the catalog route, so "catalog" is refused at start instead.)
    for (const raw of ["a%2Fb", "..%2F..%2Fsecrets", "%2e%2e%2f", "a%00b", "%C3%A9", "a%20b", "x".repeat(257), "runs"]) {
      for (const suffix of ["status", "input", "runs/00000000-0000-4000-8000-000000000000/status"]) {
        const res = await get(`/workflow/${raw}/${suffix}`, org.key);
        expect(res.status, `${raw}/${suffix}`).toBe(400);
        expect((await outputError(res)).error).toBe("ValidationError");
      }
    }
  });

  it("security: a 404 for a very long handler name quotes it cut short, not whole (signal, query, update)", async () => {
    const run = await createRunningRun(org.organizationId, "two_steps");
    for (const kind of ["signal", "query", "update"]) {
      const res = await send("POST", `/workflow/${run.workflowId}/${kind}/${"h".repeat(8000)}`, org.key, {});
      expect(res.status, kind).toBe(404);
      const error = await outputError(res);
      expect([error.code, error.message.length < 300], kind).toEqual(["handler_not_found", true]);
    }
  });

  it("another organization's run is 404 WorkflowNotFoundError on every new route, never its data", async () => {
    const done = await finishedRun(org);
    const running = await createRunningRun(org.organizationId, "approval");
    const paths: Array<[string, string, unknown?]> = [
      ["GET", `/workflow/${done.workflowId}/input`],
      ["GET", `/workflow/${done.workflowId}/runs/${done.runId}/status`],
      ["GET", `/workflow/${done.workflowId}/runs/${done.runId}/result`],
      ["GET", `/workflow/${done.workflowId}/runs/${done.runId}/input`],
      ["PATCH", `/workflow/${running.workflowId}/runs/${running.runId}/stop`],
      ["POST", `/workflow/${running.workflowId}/runs/${running.runId}/terminate`, {}],
      ["POST", `/workflow/${running.workflowId}/feedback`, { payload: { approvedBy: "intruder" } }],
      ["POST", `/workflow/${running.workflowId}/signal/approve`, { payload: { approvedBy: "intruder" } }],
    ];
    for (const [method, path, body] of paths) {
      const res = await send(method, path, intruder.key, body);
      expect(res.status, path).toBe(404);
      const text = await res.text();
      expect((JSON.parse(text) as OutputErrorBody).code, path).toBe("run_not_found");
      expect(text).not.toContain(done.runId);
      expect(text).not.toContain(running.runId);
    }
    const list = await (await get("/workflow/runs?limit=1000", intruder.key)).json();
    expect(list).toEqual({ runs: [], count: 0 });
  });

  it("signal/query/update/feedback take Output's {payload}: a payload that is not an object, or an unwrapped body, is 400", async () => {
    const run = await createRunningRun(org.organizationId, "approval");
    // ...and an unwrapped argument is refused rather than silently dropped.
    for (const body of [
      { payload: [1] },
      { payload: "yes" },
      { payload: 3 },
      "[1]",
      '"x"',
      { approvedBy: "x" },
      { payload: {}, extra: 1 },
    ]) {
      for (const path of [
        `/workflow/${run.workflowId}/signal/approve`,
        `/workflow/${run.workflowId}/feedback`,
        `/workflow/${run.workflowId}/update/setPriority`,
      ]) {
        const res = await send("POST", path, org.key, body);
        expect(res.status, `${path} ${JSON.stringify(body)}`).toBe(400);
        expect((await outputError(res)).error).toBe("ValidationError");
      }
    }
    // The body is checked first, as Output checks it: a bad one is 400 on an unknown run too.
    for (const kind of ["signal/approve", "query/status", "update/setPriority", "feedback"]) {
      const res = await send("POST", `/workflow/approval-${crypto.randomUUID()}/${kind}`, org.key, { payload: [1] });
      expect(res.status, kind).toBe(400);
      expect((await outputError(res)).error).toBe("ValidationError");
    }
    // A payload's keys reach the handler as sent, `__proto__` and `constructor` included: nothing
    // is dropped on the way (JSON.parse makes them own keys; copying them one by one would not).
    const seen: string[] = [];
    const restore = scriptHost(async (request) => {
      seen.push(await request.text());
      return Response.json({});
    });
    try {
      const text = '{"payload":{"__proto__":{"admin":true},"constructor":"c","approvedBy":"Ada"}}';
      for (const path of [`/workflow/${run.workflowId}/signal/approve`, `/workflow/${run.workflowId}/update/setPriority`]) {
        const res = await send("POST", path, org.key, text);
        expect(res.status, path).toBe(200);
      }
    } finally {
      restore();
    }
    expect(seen).toHaveLength(2);
    for (const body of seen) expect(body).toBe('{"payload":{"__proto__":{"admin":true},"constructor":"c","approvedBy":"Ada"}}');
    // feedback needs the workflow to declare signal `resume`; two_steps does not.
    const other = await createRunningRun(org.organizationId, "two_steps");
    const noResume = await send("POST", `/workflow/${other.workflowId}/feedback`, org.key, { payload: {} });
    expect(noResume.status).toBe(404);
    expect((await outputError(noResume)).code).toBe("handler_not_found");
  });
});

describe("catalog and runs list", () => {
  let org: Org;
  beforeAll(async () => {
    await seedCatalog();
    org = await seedOrganization();
  });

  it("GET /workflow/catalog/outrider is the catalog; another id 404 CatalogNotFoundError; a malformed one 400", async () => {
    const all = (await (await get("/workflow/catalog", org.key)).json()) as { workflows: Array<{ name: string }> };
    const byId = (await (await get("/workflow/catalog/outrider", org.key)).json()) as { workflows: Array<{ name: string }> };
    expect(byId.workflows.map((w) => w.name)).toEqual(all.workflows.map((w) => w.name));
    expect(byId.workflows.length).toBeGreaterThan(0);
    const other = await get("/workflow/catalog/main", org.key);
    expect(other.status).toBe(404);
    expect(await outputError(other)).toMatchObject({ error: "CatalogNotFoundError", code: "catalog_not_found" });
    const bad = await get("/workflow/catalog/a%20b", org.key);
    expect(bad.status).toBe(400);
  });

  it("security: runs reads only the columns it lists, never a run's input, output or error details (up to a few MiB a row)", async () => {
    await finishedRun(org, "two_steps");
    const statements: string[] = [];
    const undo = interceptD1InPlace(env.DB, (c) => {
      if (c.kind === "statement") statements.push(c.sql);
    });
    try {
      for (const query of ["", "?workflowType=two_steps&limit=1000"])
        expect((await get(`/workflow/runs${query}`, org.key)).status).toBe(200);
    } finally {
      undo();
    }
    const lists = statements.filter((sql) => /from "runs"/i.test(sql));
    expect(lists).toHaveLength(2);
    for (const sql of lists) expect(sql).not.toMatch(/"(input|output|error|error_details)"/);
  });

  it("runs: Output's fields and count, workflowType and catalog filters, limit 1-1000 (default 100)", async () => {
    const hello = await createRunningRun(org.organizationId, "hello");
    const steps = await finishedRun(org, "two_steps");
    const all = (await (await get("/workflow/runs", org.key)).json()) as { runs: Array<Record<string, unknown>>; count: number };
    expect(all.count).toBe(all.runs.length);
    const row = all.runs.find((r) => r.workflowId === steps.workflowId)!;
    expect(row).toMatchObject({ workflowId: steps.workflowId, runId: steps.runId, workflowType: "two_steps", status: "completed" });
    expect(new Date(row.startedAt as string).toISOString()).toBe(row.startedAt);
    expect(typeof row.completedAt).toBe("string");
    expect(all.runs.find((r) => r.workflowId === hello.workflowId)!.completedAt).toBeNull();

    const onlyHello = (await (await get("/workflow/runs?workflowType=hello&limit=1000", org.key)).json()) as {
      runs: Array<{ workflowType: string }>;
      count: number;
    };
    expect(onlyHello.count).toBe(1);
    expect(onlyHello.runs.map((r) => r.workflowType)).toEqual(["hello"]);
    expect(await (await get("/workflow/runs?workflowType=no_such_workflow", org.key)).json()).toEqual({ runs: [], count: 0 });
    // The filter is the run's own workflow name, as the unfiltered list shows it: a run of a
    // workflow no longer runnable (a prompt workflow since deleted, one unpublished) is found too.
    const retired = await createRunningRun(org.organizationId, "hello");
    await env.DB.prepare("UPDATE runs SET workflow_name = ? WHERE temporal_workflow_id = ?")
      .bind("retired-prompt-workflow", retired.workflowId)
      .run();
    const byName = (await (await get("/workflow/runs?workflowType=retired-prompt-workflow", org.key)).json()) as {
      runs: Array<{ workflowId: string; workflowType: string }>;
    };
    expect(byName.runs.map((r) => [r.workflowId, r.workflowType])).toEqual([[retired.workflowId, "retired-prompt-workflow"]]);
    expect(await (await get("/workflow/runs?catalog=main", org.key)).json()).toEqual({ runs: [], count: 0 });
    // A repeated parameter is 400 naming it, not silently its first value.
    const repeated = await get("/workflow/runs?limit=1&limit=1000", org.key);
    expect(repeated.status).toBe(400);
    expect((await outputError(repeated)).issues).toEqual([{ path: "limit", message: expect.stringContaining("more than once") }]);
    expect(((await (await get("/workflow/runs?catalog=outrider&limit=1", org.key)).json()) as { count: number }).count).toBe(1);

    // The filtered list walks runs_org_workflow_name_created_idx in order (no scan of the org's runs).
    const plan = await env.DB.prepare(
      "EXPLAIN QUERY PLAN SELECT * FROM runs WHERE organization_id = ? AND workflow_name = ? ORDER BY created_at DESC, id DESC LIMIT ?",
    )
      .bind(org.organizationId, "x", 100)
      .all<{ detail: string }>();
    const details = plan.results.map((r) => r.detail).join("\n");
    expect(details).toContain("USING INDEX runs_org_workflow_name_created_idx (organization_id=? AND workflow_name=?)");
    expect(details).not.toMatch(/SCAN runs\b/);

    for (const q of ["limit=0", "limit=1001", "limit=abc", "limit=0x10", "limit=1e2", "limit=%2010", "limit=", "catalog=a%2Fb"]) {
      const res = await get(`/workflow/runs?${q}`, org.key);
      expect(res.status, q).toBe(400);
      expect((await outputError(res)).error).toBe("ValidationError");
    }
  });

  it("runs?workflowType=: a name is found whichever Unicode form the caller sends (NFC or NFD); a run recorded under a non-NFC name before names were normalized, by that form too", async () => {
    const named = async (name: string) => {
      const run = await createRunningRun(org.organizationId, "hello");
      await env.DB.prepare("UPDATE runs SET workflow_name = ? WHERE temporal_workflow_id = ?").bind(name, run.workflowId).run();
      return run.workflowId;
    };
    const nfc = await named("Caf\u00e9 digest"); // a prompt workflow's name, stored in NFC
    const legacy = await named("Cafe\u0301 legacy"); // stored as sent, before names were normalized
    const found = async (workflowType: string) =>
      (
        (await (await get(`/workflow/runs?workflowType=${encodeURIComponent(workflowType)}`, org.key)).json()) as {
          runs: Array<{ workflowId: string }>;
        }
      ).runs.map((r) => r.workflowId);
    expect(await found("Caf\u00e9 digest")).toEqual([nfc]);
    expect(await found("Cafe\u0301 digest")).toEqual([nfc]);
    expect(await found("Cafe\u0301 legacy")).toEqual([legacy]);
  });
});

describe("probes", () => {
  // Each test starts with no answer kept from the one before (GET /ready reuses one for 2 s).
  beforeEach(() => forgetReadiness());

  it("GET /ready: 503 ServiceUnavailableError with Retry-After when the host cannot be reached (no auth needed)", async () => {
    const res = await call("/ready");
    expect(res.status).toBe(503);
    expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(await outputError(res)).toMatchObject({ error: "ServiceUnavailableError", code: "host_unavailable" });
  });

  it("security: GET /ready (no auth) does not pass on what the host said about its network", async () => {
    const internal = "Temporal did not answer: 14 UNAVAILABLE: connect ECONNREFUSED 10.20.30.40:7233";
    const restore = scriptHost(() => Response.json({ error: { code: "temporal_unavailable", message: internal } }, { status: 503 }));
    try {
      const res = await call("/ready");
      expect(res.status).toBe(503);
      expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
      const text = await res.text();
      expect(JSON.parse(text)).toMatchObject({ error: "ServiceUnavailableError", code: "host_unavailable" });
      expect(text).not.toContain("10.20.30.40");
      expect(text).not.toContain("ECONNREFUSED");
    } finally {
      restore();
    }
  });

  it("security: GET /ready gives a host that hangs HOST_READY_WAIT_MS, then answers 503; one check serves the probes that follow for 2 s, ready or not", async () => {
    let asked = 0;
    // Only the readiness checks are scripted: other test files' calls to the host (they share this
    // isolate's fetch) meet the closed port they expect.
    const scriptReady = (answer: (request: Request) => Promise<Response>) =>
      scriptHost((request, path) => {
        if (path !== HOST_PATHS.ready) return Promise.reject(new TypeError("connection refused"));
        asked++;
        return answer(request);
      });
    // A host that takes the connection and never answers (the edge's wait aborts the request).
    let restore = scriptReady(
      (request) => new Promise<Response>((_, reject) => request.signal.addEventListener("abort", () => reject(new Error("aborted")))),
    );
    try {
      const started = Date.now();
      const res = await call("/ready");
      expect(res.status).toBe(503);
      expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
      expect(await outputError(res)).toMatchObject({ error: "ServiceUnavailableError", code: "host_unavailable" });
      expect(Date.now() - started).toBeGreaterThanOrEqual(HOST_READY_WAIT_MS - 100);
      // The probes that follow within 2 s are answered from that check: the struggling host is not asked again.
      for (let i = 0; i < 5; i++) expect((await call("/ready")).status).toBe(503);
      expect(asked, "checks of a host that hangs").toBe(1);
    } finally {
      restore();
    }
    forgetReadiness();
    asked = 0;
    restore = scriptReady(async () => Response.json({ ok: true }));
    try {
      for (let i = 0; i < 5; i++) expect(await (await call("/ready")).json()).toEqual({ ok: true, host: "ok", temporal: "ok" });
      expect(asked, "checks of a ready host").toBe(1);
    } finally {
      restore();
    }
  }, 20_000);

  it("CORS: a browser preflight asking for the request headers Output allows (X-Requested-With, Accept) is allowed", async () => {
    // Output's server allows Origin, X-Requested-With, Content-Type, Accept, Authorization (api/src/index.js);
    // a page whose HTTP client sets X-Requested-With on every call (axios set up as many frameworks do)
    // is blocked by the browser unless the preflight lists it.
    const res = await preflight("/workflow/start", "POST", "accept,authorization,content-type,x-requested-with");
    expect(res.status).toBe(204);
    const allowed = (res.headers.get("access-control-allow-headers") ?? "").toLowerCase().split(/\s*,\s*/);
    expect(allowed).toEqual(expect.arrayContaining(["accept", "authorization", "content-type", "x-requested-with"]));
  });

  it("POST /heartbeat: 204 with a key (Bearer or Output's Basic), 401 without", async () => {
    const org = await seedOrganization();
    for (const authorization of [`Bearer ${org.key}`, `Basic ${org.key}`]) {
      const res = await call("/heartbeat", { method: "POST", headers: { authorization } });
      expect(res.status).toBe(204);
      expect(await res.text()).toBe("");
    }
    const anonymous = await call("/heartbeat", { method: "POST" });
    expect(anonymous.status).toBe(401);
    expect((await outputError(anonymous)).error).toBe("UnauthorizedError");
  });
});
