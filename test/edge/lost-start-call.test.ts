/**
 * A start whose call from the Worker into the run's DO is lost on the way (the DO reset by a
 * deploy, the connection broken), after the DO may have accepted the run (services/runs.ts,
 * startAfterLostCall). The Worker app runs here with its RunStream binding wrapped so that a start
 * call's answer is lost after the DO handled it, or the call is lost before it arrives. The Worker
 * asks the DO what became of the start: an accepted run runs, so the caller is told so (never an
 * error it would answer by starting the run again); a start that was not accepted runs nowhere, so
 * it is a 503 that a retry may follow. And a blocking start whose wait fails once the run is
 * accepted answers with the run as it is, not with that failure.
 */
import { createExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import app from "../../src/index.ts";
import { runStream } from "../../src/run-stream-client.ts";
import { HOST_PATHS } from "../../src/shared/host-api.ts";
import { aroundDurableObjectCalls } from "./durable-object-calls.ts";
import { createPromptWorkflow, errorCodeOf, scriptHost, scriptedStart, seedCatalog, seedOrganization } from "./helpers.ts";
import { runStartOutboxAttempt } from "./stream-helpers.ts";

/** The start calls of the Worker into a RunStream DO (RPC, and the streaming start's upgrade). */
const START_CALLS = new Set(["start", "startAndWait", "startForStream", "fetch"]);

/**
 * Where a start call breaks: its answer lost once the DO is done with it, the call lost before it
 * arrives, the connection lost while the DO is still at it (the DO goes on), or nowhere.
 */
type Loss = "answer" | "call" | "midway" | "none";

/** RUN_STREAM whose start calls fail as a broken connection: after the DO handled them (`answer`), or before (`call`). */
function losingStarts(ns: Env["RUN_STREAM"], loss: Loss): Env["RUN_STREAM"] {
  return aroundDurableObjectCalls(ns, async (method, call) => {
    if (loss === "none" || !START_CALLS.has(method)) return call();
    if (loss === "answer") await call();
    if (loss === "midway") void Promise.resolve(call()).catch(() => {});
    throw new Error("Network connection lost.");
  });
}

async function send(path: string, body: unknown, key: string, loss: Loss, headers: Record<string, string> = {}): Promise<Response> {
  const request = new Request(new URL(path, "http://edge.test"), {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
  return app.fetch(request, { ...env, RUN_STREAM: losingStarts(env.RUN_STREAM, loss) }, createExecutionContext());
}

/** Whether the scripted host starts runs (else it cannot be reached: the start stays in the outbox). */
let hostStarts = false;
/** Whether the scripted host fails (500, with its error body) every wait for a run's result. */
let resultsFail = false;
let restoreHost: () => void = () => {};

beforeAll(async () => {
  await seedCatalog();
  restoreHost = scriptHost(async (request, path) => {
    if (path === HOST_PATHS.start && hostStarts) return Response.json(await scriptedStart(request));
    if (resultsFail && path.endsWith("/result")) return Response.json({ error: { code: "host_error", message: "boom" } }, { status: 500 });
    throw new TypeError("connection refused");
  });
  return () => restoreHost();
});

afterEach(() => {
  hostStarts = false;
  resultsFail = false;
});

const runRow = (workflowId: string) =>
  env.DB.prepare("SELECT status, temporal_run_id FROM runs WHERE temporal_workflow_id = ?").bind(workflowId).first();
const hello = { workflowName: "hello", input: { name: "Ada" } };

describe("a start call whose answer is lost after the DO accepted the run", () => {
  for (const path of ["/workflow/start", "/workflow/run"] as const) {
    it(`${path}: answers that the run is accepted (runId null), and the outbox starts it, once`, async () => {
      const org = await seedOrganization();
      // /workflow/run's DO waits for the unconfirmed start until its timeout; then the answer is lost.
      const res = await send(path, path === "/workflow/run" ? { ...hello, timeout: 500 } : hello, org.key, "answer");
      const body = (await res.json()) as { workflowId: string; runId: string | null; status: string; error?: string };
      if (path === "/workflow/start") {
        expect(res.status, JSON.stringify(body)).toBe(200);
        expect(body).toMatchObject({ runId: null, status: "scheduled" });
      } else {
        // Never a 2xx for a run that has not ended (Output's CLI would print it as finished): Output's
        // 408, which its CLI does not retry (no Retry-After), with where the result will be.
        expect(res.status, JSON.stringify(body)).toBe(408);
        expect(body).toMatchObject({ error: "WorkflowExecutionTimedOutError", code: "wait_timed_out" });
        expect(res.headers.get("retry-after")).toBeNull();
        expect(res.headers.get("location")).toBe(`/workflow/${body.workflowId}/result`);
      }
      expect(await runRow(body.workflowId)).toEqual({ status: "scheduled", temporal_run_id: null });
      hostStarts = true;
      await runStartOutboxAttempt(runStream(env, body.workflowId));
      expect(await runRow(body.workflowId)).toMatchObject({ status: "running" });
      const rows = await env.DB.prepare("SELECT COUNT(*) AS n FROM runs WHERE organization_id = ?").bind(org.organizationId).first("n");
      expect(rows).toBe(1);
    });
  }

  it("POST /api/v1/workflow-runs/execute/stream (a streaming start): answers 202 with the accepted run", async () => {
    const org = await seedOrganization();
    const helloId = await env.DB.prepare("SELECT id FROM workflows WHERE name = 'hello' AND organization_id IS NULL").first<string>("id");
    const res = await send(
      "/api/v1/workflow-runs/execute/stream",
      { workflowId: helloId, inputs: { name: "Ada" } },
      "edge-test-internal-secret-of-32-characters",
      "answer",
      { "x-organization-id": org.organizationId },
    );
    const body = (await res.json()) as { success: boolean; workflowRun: { id: string; status: string } };
    expect(res.status, JSON.stringify(body)).toBe(202);
    expect(body).toMatchObject({ success: true, workflowRun: { status: "scheduled" } });
    const row = await env.DB.prepare("SELECT status FROM runs WHERE id = ?").bind(body.workflowRun.id).first("status");
    expect(row).toBe("scheduled");
  });

  it("a run Temporal already confirmed is answered as accepted too (the caller follows it by id)", async () => {
    hostStarts = true;
    const org = await seedOrganization();
    const res = await send("/workflow/start", hello, org.key, "answer");
    const body = (await res.json()) as { workflowId: string; runId: string | null; status: string };
    expect(res.status, JSON.stringify(body)).toBe(200);
    expect(body).toMatchObject({ runId: null, status: "running" });
    expect(await runRow(body.workflowId)).toMatchObject({ status: "running" });
  });
});

describe("a start call whose connection is lost while the DO is still at it", () => {
  it("is answered once the DO is done: accepted, one run (the DO says 'starting' while it claims the key and reads the catalog)", async () => {
    const org = await seedOrganization();
    const res = await send("/workflow/start", hello, org.key, "midway", { "idempotency-key": `key-${crypto.randomUUID()}` });
    const body = (await res.json()) as { workflowId: string; runId: string | null; status: string };
    expect(res.status, JSON.stringify(body)).toBe(200);
    expect(body).toMatchObject({ runId: null, status: "scheduled" });
    const rows = await env.DB.prepare("SELECT COUNT(*) AS n FROM runs WHERE organization_id = ?").bind(org.organizationId).first("n");
    expect(rows).toBe(1);
  });
});

describe("a start call lost after the DO accepted the run, whose question 'what became of it' fails too", () => {
  /** RUN_STREAM whose start calls' answers are lost, and whose first `failures` startOutcome calls (all, if Infinity) fail as lost. */
  const losingOutcomes = (failures: number): Env["RUN_STREAM"] => {
    let failed = 0;
    return aroundDurableObjectCalls(env.RUN_STREAM, async (method, call) => {
      if (START_CALLS.has(method)) {
        await call();
        throw new Error("Network connection lost.");
      }
      if (method === "startOutcome" && failed++ < failures) throw new Error("Network connection lost.");
      return call();
    });
  };
  const sendLosing = (key: string, failures: number) =>
    app.fetch(
      new Request(new URL("/workflow/start", "http://edge.test"), {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: JSON.stringify(hello),
      }),
      { ...env, RUN_STREAM: losingOutcomes(failures) },
      createExecutionContext(),
    );

  it("asks again: a question that fails twice, then gets through, answers that the run is accepted", async () => {
    const org = await seedOrganization();
    const res = await sendLosing(org.key, 2);
    const body = (await res.json()) as { workflowId: string; runId: string | null; status: string };
    expect(res.status, JSON.stringify(body)).toBe(200);
    expect(body).toMatchObject({ runId: null, status: "scheduled" });
  });

  it("never learned: 504 start_outcome_unknown naming the workflowId, without Retry-After (not a 500 a client would retry into a second run)", async () => {
    const org = await seedOrganization();
    const res = await sendLosing(org.key, Number.POSITIVE_INFINITY);
    const body = (await res.json()) as { error: string; code: string; workflowId: string; message: string };
    expect(res.status, JSON.stringify(body)).toBe(504);
    expect(body).toMatchObject({ error: "WorkflowStartOutcomeUnknownError", code: "start_outcome_unknown" });
    expect(res.headers.get("retry-after")).toBeNull();
    // It was accepted: the row the message points at is there, and it runs once the host answers.
    expect(await runRow(body.workflowId)).toEqual({ status: "scheduled", temporal_run_id: null });
    expect(body.message).toContain(body.workflowId);
  });
});

describe("a start call lost before it reached the DO", () => {
  for (const path of ["/workflow/start", "/workflow/run"]) {
    it(`${path}: is 503 with Retry-After (nothing runs, so a retry is safe), and leaves no row`, async () => {
      const org = await seedOrganization();
      const res = await send(path, hello, org.key, "call");
      const body = await res.json();
      expect(res.status, JSON.stringify(body)).toBe(503);
      expect(res.headers.get("retry-after")).toBe("1");
      expect(errorCodeOf(body)).toBe("host_unavailable");
      expect(await env.DB.prepare("SELECT COUNT(*) AS n FROM runs WHERE organization_id = ?").bind(org.organizationId).first("n")).toBe(0);
    });
  }
});

describe("a start call the DO's own code failed (an error it threw, not a lost call)", () => {
  /** RUN_STREAM whose start calls reach nothing and fail as the DO's code would fail them: Cloudflare marks such an error `remote`. */
  const throwingStarts = (message: string): Env["RUN_STREAM"] =>
    aroundDurableObjectCalls(env.RUN_STREAM, async (method, call) => {
      if (!START_CALLS.has(method)) return call();
      throw Object.assign(new Error(message), { remote: true });
    });
  const sendThrowing = (path: string, key: string, message: string) =>
    app.fetch(
      new Request(new URL(path, "http://edge.test"), {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: JSON.stringify(hello),
      }),
      { ...env, RUN_STREAM: throwingStarts(message) },
      createExecutionContext(),
    );

  for (const path of ["/workflow/start", "/workflow/run"]) {
    it(`${path}: a failure a retry would meet again is 500 internal_error without Retry-After, not a 503 that promises a retry works; no row`, async () => {
      const org = await seedOrganization();
      const res = await sendThrowing(path, org.key, "D1_ERROR: string or blob too big: SQLITE_TOOBIG");
      const body = await res.json();
      expect([res.status, errorCodeOf(body), res.headers.get("retry-after")], JSON.stringify(body)).toEqual([500, "internal_error", null]);
      expect(await env.DB.prepare("SELECT COUNT(*) AS n FROM runs WHERE organization_id = ?").bind(org.organizationId).first("n")).toBe(0);
    });
  }

  it("a passing platform failure inside the DO (D1 overloaded) is still 503 with Retry-After", async () => {
    const org = await seedOrganization();
    const res = await sendThrowing("/workflow/start", org.key, "D1_ERROR: D1 DB is overloaded. Requests queued for too long.");
    expect([res.status, errorCodeOf(await res.json()), res.headers.get("retry-after")]).toEqual([503, "host_unavailable", "1"]);
  });
});

describe("a blocking start whose wait fails after the run started", () => {
  it("answers with the run as it is (still going: 408 with Location), never an error a client would answer by starting it again", async () => {
    hostStarts = true;
    resultsFail = true;
    const org = await seedOrganization();
    const res = await send("/workflow/run", hello, org.key, "none");
    const body = (await res.json()) as { code: string; workflowId: string };
    expect(res.status, JSON.stringify(body)).toBe(408);
    expect(body.code).toBe("wait_timed_out");
    expect(res.headers.get("location")).toBe(`/workflow/${body.workflowId}/result`);
    expect(await runRow(body.workflowId)).toMatchObject({ status: "running" });
  });

  it("POST /api/v1/run/{id}: 202 with the run's id (status running), not a 504 'did not finish in time' a client would retry", async () => {
    hostStarts = true;
    resultsFail = true;
    const org = await seedOrganization();
    const promptWorkflowId = await createPromptWorkflow(org.organizationId);
    const res = await send(`/api/v1/run/${promptWorkflowId}`, { audience: "kids", topic: "stars" }, org.key, "none");
    const body = await res.json();
    expect(res.status, JSON.stringify(body)).toBe(202);
    const runId = res.headers.get("x-run-id")!;
    expect(body).toEqual({ workflowId: runId, status: "running" });
    expect(await runRow(runId)).toMatchObject({ status: "running" });
  });
});
