/**
 * Step rows across a reset (POST /workflow/:id/reset): the reset's Temporal run repeats the
 * replaced run's activity ids and attempt numbers (Temporal numbers activities per run, and the
 * new run re-runs every step after the reset point), and its attempts get rows of their own: the
 * replaced run's step outputs and errors stay in D1 as they were, and the Workflow Runs API's
 * detail lists both runs' attempts, each naming its Temporal run (docs/workflow-runs.md). The host
 * is scripted in this isolate (edge tests have none); the steps arrive as the host pushes them.
 * Happy paths, then the cases where events of the two runs arrive interleaved.
 */
import { env } from "cloudflare:workers";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HOST_PATHS } from "../../src/shared/host-api.ts";
import { stepRunId } from "../../src/shared/step-run-id.ts";
import { readSse } from "../support/sse.ts";
import { call, scriptHost, seedCatalog, seedOrganization } from "./helpers.ts";
import { closeEvent, createRunningRun, finishedEvent, push } from "./stream-helpers.ts";

/** The run id the scripted host gives the next reset's run. */
let nextResetRunId = "";
let restoreHost: () => void;
let organizationId: string;
let key: string;
let token: string;

beforeAll(async () => {
  await seedCatalog();
  ({ organizationId, key } = await seedOrganization());
  token = await new SignJWT({ org_id: organizationId })
    .setProtectedHeader({ alg: "HS256" })
    .setExpirationTime("5m")
    .sign(new TextEncoder().encode("edge-test-jwt-secret-at-least-32-bytes-long"));
  restoreHost = scriptHost(async (_request, path) => {
    if (path.startsWith(HOST_PATHS.start) || !path.endsWith("/reset")) throw new TypeError("connection refused");
    const workflowId = decodeURIComponent(path.split("/").at(-2)!);
    const previous = await env.DB.prepare("SELECT temporal_run_id FROM runs WHERE temporal_workflow_id = ?")
      .bind(workflowId)
      .first<{ temporal_run_id: string }>();
    return Response.json({ workflowId, runId: nextResetRunId, resetFromRunId: previous!.temporal_run_id });
  });
});
afterAll(() => restoreHost());

/** Event times, strictly increasing: the detail lists attempts by when they started. */
let clock = Date.now();
const at = () => new Date(++clock).toISOString();

/** A step event as the host's activity interceptor publishes it (host/activities/runtime.ts). */
function step(
  runId: string,
  activityId: string,
  stepName: string,
  attempt: number,
  state: "started" | "completed" | "failed",
  details: { outputs?: unknown; error?: string } = {},
) {
  return {
    sourceKey: `step:${runId}:${activityId}:${attempt}:${state}`,
    type: "step",
    at: at(),
    data: { runId, activityId, stepName, attempt, state, ...details },
  };
}

/** Both ends of one attempt. */
const attempt = (runId: string, activityId: string, stepName: string, n: number, end: "completed" | "failed", details: object) => [
  step(runId, activityId, stepName, n, "started"),
  step(runId, activityId, stepName, n, end, details),
];

/** POST /workflow/:id/reset to after step `a`; the scripted host starts `newRunId`. */
async function reset(workflowId: string, newRunId: string) {
  nextResetRunId = newRunId;
  const res = await call(`/workflow/${workflowId}/reset`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify({ stepName: "a" }),
  });
  expect(res.status).toBe(200);
  expect(await res.json()).toEqual({ workflowId, runId: newRunId });
}

interface StepRow {
  id: string;
  temporal_run_id: string;
  step_id: string;
  attempt: number;
  status: string;
  outputs: string | null;
  error: string | null;
}
const stepRows = async (workflowId: string) =>
  (
    await env.DB.prepare(
      `SELECT s.id, s.temporal_run_id, s.step_id, s.attempt, s.status, s.outputs, s.error
       FROM step_runs s JOIN runs r ON r.id = s.run_id WHERE r.temporal_workflow_id = ?
       ORDER BY s.created_at, s.temporal_run_id, s.step_id, s.attempt`,
    )
      .bind(workflowId)
      .all<StepRow>()
  ).results;
const runUuidOf = async (workflowId: string) =>
  (await env.DB.prepare("SELECT id FROM runs WHERE temporal_workflow_id = ?").bind(workflowId).first<{ id: string }>())!.id;

interface ActivityRun {
  id: string;
  temporalRunId: string | null;
  stepId: string;
  stepName: string | null;
  attempt: number;
  status: string;
  outputs: unknown;
  error: string | null;
}
const detail = async (runUuid: string) => {
  const res = await call(`/api/v1/workflow-runs/${runUuid}`, { headers: { authorization: `Bearer ${token}` } });
  expect(res.status).toBe(200);
  return (await res.json()) as { id: string; status: string; temporalRunId: string | null; activityRuns: ActivityRun[] };
};

/**
 * A `two_steps` run A whose step `a` (activity 1) completed, and whose step `b` (activity 2)
 * failed once and then completed; A ended. Then a reset to after `a` started run B.
 */
async function ranThenReset() {
  const { workflowId, runId: a } = await createRunningRun(organizationId);
  await push(workflowId, [
    ...attempt(a, "1", "a", 1, "completed", { outputs: { a: "from A" } }),
    ...attempt(a, "2", "b", 1, "failed", { error: "A's first try of b failed" }),
    ...attempt(a, "2", "b", 2, "completed", { outputs: { b: "from A" } }),
    finishedEvent(a),
  ]);
  const b = crypto.randomUUID();
  await reset(workflowId, b);
  return { workflowId, a, b };
}

describe("step rows across a reset", () => {
  it("the reset's run writes the same step and attempts to rows of its own; the replaced run's rows stay as they were", async () => {
    const { workflowId, a, b } = await ranThenReset();
    // B re-runs b (activity 2 again: the activities before the reset point keep their numbers).
    await push(workflowId, [
      ...attempt(b, "2", "b", 1, "failed", { error: "B's first try of b failed" }),
      ...attempt(b, "2", "b", 2, "completed", { outputs: { b: "from B" } }),
      finishedEvent(b),
    ]);
    const rows = await stepRows(workflowId);
    expect(rows.map(({ id: _, ...r }) => r)).toEqual([
      { temporal_run_id: a, step_id: "1", attempt: 1, status: "completed", outputs: JSON.stringify({ a: "from A" }), error: null },
      { temporal_run_id: a, step_id: "2", attempt: 1, status: "failed", outputs: null, error: "A's first try of b failed" },
      { temporal_run_id: a, step_id: "2", attempt: 2, status: "completed", outputs: JSON.stringify({ b: "from A" }), error: null },
      { temporal_run_id: b, step_id: "2", attempt: 1, status: "failed", outputs: null, error: "B's first try of b failed" },
      { temporal_run_id: b, step_id: "2", attempt: 2, status: "completed", outputs: JSON.stringify({ b: "from B" }), error: null },
    ]);
    // Each row's id is the activity run id derived from its own Temporal run.
    for (const row of rows) expect(row.id).toBe(await stepRunId(workflowId, row.temporal_run_id, row.step_id, row.attempt));
    expect(new Set(rows.map((r) => r.id)).size).toBe(rows.length);
  });

  it("the run's detail lists both runs' attempts, oldest first, each naming its Temporal run; the run names the current one", async () => {
    const { workflowId, a, b } = await ranThenReset();
    await push(workflowId, [...attempt(b, "2", "b", 1, "completed", { outputs: { b: "from B" } }), finishedEvent(b)]);
    const runUuid = await runUuidOf(workflowId);
    const shown = await detail(runUuid);
    expect(shown).toMatchObject({ id: runUuid, status: "completed", temporalRunId: b });
    expect(shown.activityRuns.map((r) => [r.temporalRunId, r.stepId, r.stepName, r.attempt, r.status, r.outputs, r.error])).toEqual([
      [a, "1", "a", 1, "completed", { a: "from A" }, null],
      [a, "2", "b", 1, "failed", null, "A's first try of b failed"],
      [a, "2", "b", 2, "completed", { b: "from A" }, null],
      [b, "2", "b", 1, "completed", { b: "from B" }, null],
    ]);
    expect(shown.activityRuns.map((r) => r.id)).toEqual((await stepRows(workflowId)).map((r) => r.id));
  });

  it("the run's event stream names the new run's attempt by the id its row has in the detail", async () => {
    const { workflowId, b } = await ranThenReset();
    await push(workflowId, [...attempt(b, "2", "b", 1, "completed", { outputs: { b: "from B" } }), closeEvent(b, 9), finishedEvent(b)]);
    const runUuid = await runUuidOf(workflowId);
    const res = await call(`/api/v1/workflow-runs/${runUuid}/stream`, { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
    const streamed = new Map<string, string>();
    for await (const m of readSse(res.body!)) {
      if (m.event !== "activity-run") continue;
      const { content } = JSON.parse(m.data) as { content: { activityRunId: string; stepId: string; attempt: number; status: string } };
      streamed.set(content.activityRunId, `${content.stepId}:${content.attempt}:${content.status}`);
    }
    // The stream follows the row's current run: B's attempt, under the id of B's row (not A's row of the same attempt).
    const id = await stepRunId(workflowId, b, "2", 1);
    expect(streamed).toEqual(new Map([[id, "2:1:completed"]]));
    const shown = await detail(runUuid);
    expect(shown.activityRuns.filter((r) => r.id === id).map((r) => [r.temporalRunId, r.stepId, r.attempt])).toEqual([[b, "2", 1]]);
  });
});

describe("step rows across a reset: the two runs' events interleaved", () => {
  it("the replaced run's late end of an attempt, pushed with the new run's same attempt, changes only the replaced run's row", async () => {
    const { workflowId, runId: a } = await createRunningRun(organizationId);
    // A's step b has started; the reset terminates A before its end was pushed.
    await push(workflowId, [...attempt(a, "1", "a", 1, "completed", { outputs: { a: "from A" } }), step(a, "2", "b", 1, "started")]);
    const b = crypto.randomUUID();
    await reset(workflowId, b);
    // One push carries B's attempt and, late, the end of A's: one projection with both runs' rows.
    await push(workflowId, [
      step(b, "2", "b", 1, "started"),
      step(a, "2", "b", 1, "failed", { error: "A was terminated" }),
      step(b, "2", "b", 1, "completed", { outputs: { b: "from B" } }),
    ]);
    const rows = (await stepRows(workflowId)).map(({ temporal_run_id, step_id, attempt, status, outputs, error }) => ({
      run: temporal_run_id === a ? "A" : temporal_run_id === b ? "B" : temporal_run_id,
      step_id,
      attempt,
      status,
      outputs,
      error,
    }));
    expect(rows).toEqual([
      { run: "A", step_id: "1", attempt: 1, status: "completed", outputs: JSON.stringify({ a: "from A" }), error: null },
      { run: "A", step_id: "2", attempt: 1, status: "failed", outputs: null, error: "A was terminated" },
      { run: "B", step_id: "2", attempt: 1, status: "completed", outputs: JSON.stringify({ b: "from B" }), error: null },
    ]);
  });
});
