/**
 * Credits of a reset (POST /workflow/:id/reset and /workflow/:id/runs/:rid/reset): a reset of a
 * metered organization's run holds credits like a start, before the host is asked, and the new
 * run's end is charged only what the new run used. The host is scripted in this isolate (edge
 * tests have none): the route's and the run DO's host calls go through this file's fetch, which
 * counts the reset requests. Happy paths, then refusals.
 */
import { env } from "cloudflare:workers";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { StartCommand } from "../../durable-objects/run-stream/run-starter.ts";
import { runStream } from "../../src/run-stream-client.ts";
import { HOST_PATHS } from "../../src/shared/host-api.ts";
import type { RunEvent } from "../../src/shared/run-event-schema.ts";
import { call, errorCodeOf, llmUsageEvent, meteredOrg, orgRow, scriptHost, seedCatalog, seedOrganization } from "./helpers.ts";

const HOLD = Number(env.CODE_RUN_CREDIT_HOLD);

/** How the scripted host answers a reset: the new run's id, or a refusal with its status and code. */
type ResetAnswer = { runId: string } | { status: number; code: string };
let resetAnswer: () => ResetAnswer = () => ({ status: 404, code: "step_not_found" });
let resetCalls = 0;
let restoreHost: () => void;

beforeAll(async () => {
  await seedCatalog();
  restoreHost = scriptHost(async (request, path) => {
    if (path === HOST_PATHS.start) {
      const { workflowId, acceptId } = (await request.json()) as { workflowId: string; acceptId: string };
      return Response.json({ workflowId, runId: acceptId });
    }
    if (path.endsWith("/reset")) {
      resetCalls++;
      const workflowId = decodeURIComponent(path.split("/").at(-2)!);
      const answer = resetAnswer();
      if ("code" in answer) return Response.json({ error: { code: answer.code, message: "scripted refusal" } }, { status: answer.status });
      const previous = await env.DB.prepare("SELECT temporal_run_id FROM runs WHERE temporal_workflow_id = ?")
        .bind(workflowId)
        .first<{ temporal_run_id: string }>();
      return Response.json({ workflowId, runId: answer.runId, resetFromRunId: previous!.temporal_run_id });
    }
    throw new TypeError("connection refused");
  });
});
afterAll(() => restoreHost());
afterEach(() => {
  resetAnswer = () => ({ status: 404, code: "step_not_found" });
});

let clock = Date.UTC(2026, 1, 1);
const at = () => new Date(++clock).toISOString();
const usage = (runId: string, tokens: number): RunEvent => llmUsageEvent(runId, tokens, at());
const finished = (runId: string, status: string): RunEvent =>
  ({
    sourceKey: `run:${runId}:finished`,
    type: "run.finished",
    at: at(),
    data: { runId, status, ...(status === "completed" ? { output: { greeting: "Hello, Ada" } } : { error: `run ${status}` }) },
  }) as RunEvent;

/** A `hello` run started through its DO (the scripted host confirms it), then the given events. */
async function run(organizationId: string, events: (runId: string) => RunEvent[]) {
  const runUuid = crypto.randomUUID();
  const c: StartCommand = {
    organizationId,
    workflowId: `hello-${runUuid}`,
    runUuid,
    target: { kind: "code", by: { name: "hello" }, input: { name: "Ada" } },
  };
  const stub = runStream(env, c.workflowId);
  expect(await stub.start(c)).toMatchObject({ ok: true, started: { status: "running" } });
  const runId = runUuid; // the scripted host names the run after its accept id (a UUID, as Temporal run ids are)
  const evs = events(runId);
  if (evs.length > 0) await stub.record(c.workflowId, evs);
  return { workflowId: c.workflowId, runId, stub };
}

const row = (workflowId: string) =>
  env.DB.prepare("SELECT status, temporal_run_id, credit_hold, credits_charged, tokens_total FROM runs WHERE temporal_workflow_id = ?")
    .bind(workflowId)
    .first();
const charges = (organizationId: string) =>
  env.DB.prepare("SELECT amount, note FROM credit_ledger WHERE organization_id = ? AND kind = 'charge' ORDER BY created_at, amount DESC")
    .bind(organizationId)
    .all()
    .then((r) => r.results);
const reset = (key: string, workflowId: string, runId?: string) =>
  call(runId ? `/workflow/${workflowId}/runs/${runId}/reset` : `/workflow/${workflowId}/reset`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify({ stepName: "a" }),
  });

describe("a reset holds credits like a start", () => {
  it("a reset of an ended metered run takes the hold again, and the new run's end is charged only the new run's tokens", async () => {
    const org = await meteredOrg(HOLD * 2);
    const { workflowId } = await run(org.organizationId, (runId) => [usage(runId, 10), finished(runId, "completed")]);
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 2 - 10, reserved: 0 });
    const newRunId = crypto.randomUUID();
    resetAnswer = () => ({ runId: newRunId });
    const res = await reset(org.key, workflowId);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ workflowId, runId: newRunId });
    // The reset's run.started (recorded by the route) does not wipe the hold.
    expect(await row(workflowId)).toMatchObject({ status: "running", temporal_run_id: newRunId, credit_hold: HOLD, tokens_total: 10 });
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 2 - 10, reserved: HOLD });
    await runStream(env, workflowId).record(workflowId, [usage(newRunId, 7), finished(newRunId, "completed")]);
    expect(await row(workflowId)).toMatchObject({ status: "completed", credit_hold: 0, credits_charged: 17, tokens_total: 17 });
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 2 - 17, reserved: 0 });
    expect(await charges(org.organizationId)).toEqual([
      { amount: -10, note: "10 tokens" },
      { amount: -7, note: "7 tokens" },
    ]);
  });

  it("a reset of a metered run still going keeps one hold (not two), and the reset's run is charged what it adds", async () => {
    const org = await meteredOrg(HOLD + 50);
    const { workflowId, runId } = await run(org.organizationId, (runId) => [usage(runId, 10)]);
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD + 50, reserved: HOLD });
    const newRunId = crypto.randomUUID();
    resetAnswer = () => ({ runId: newRunId });
    expect((await reset(org.key, workflowId, runId)).status).toBe(200);
    expect(await row(workflowId)).toMatchObject({ status: "running", credit_hold: HOLD });
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD + 50, reserved: HOLD });
    await runStream(env, workflowId).record(workflowId, [usage(newRunId, 4), finished(newRunId, "completed")]);
    expect(await row(workflowId)).toMatchObject({ status: "completed", credit_hold: 0, credits_charged: 4 });
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD + 46, reserved: 0 });
  });

  it("an unmetered organization's reset holds and charges nothing", async () => {
    const org = await seedOrganization();
    const { workflowId } = await run(org.organizationId, (runId) => [usage(runId, 10), finished(runId, "completed")]);
    const newRunId = crypto.randomUUID();
    resetAnswer = () => ({ runId: newRunId });
    expect((await reset(org.key, workflowId)).status).toBe(200);
    expect(await row(workflowId)).toMatchObject({ status: "running", credit_hold: 0, credits_charged: null });
    await runStream(env, workflowId).record(workflowId, [usage(newRunId, 7), finished(newRunId, "completed")]);
    expect(await row(workflowId)).toMatchObject({ status: "completed", credit_hold: 0, credits_charged: null, tokens_total: 17 });
    expect(await orgRow(org.organizationId)).toEqual({ balance: null, reserved: 0 });
    expect(await charges(org.organizationId)).toEqual([]);
  });
});

describe("a reset refused", () => {
  it("402 insufficient_credits when the organization cannot cover the hold: the host is never asked, nothing changes", async () => {
    const org = await meteredOrg(HOLD + 5);
    const { workflowId } = await run(org.organizationId, (runId) => [usage(runId, 10), finished(runId, "completed")]);
    const before = { row: await row(workflowId), org: await orgRow(org.organizationId) };
    expect(before.org).toEqual({ balance: HOLD - 5, reserved: 0 });
    resetAnswer = () => ({ runId: crypto.randomUUID() });
    const calls = resetCalls;
    const res = await reset(org.key, workflowId);
    expect(res.status).toBe(402);
    const body = await res.json();
    expect(errorCodeOf(body)).toBe("insufficient_credits");
    expect(JSON.stringify(body)).toContain(`has ${HOLD - 5}`);
    expect(resetCalls).toBe(calls);
    expect(await row(workflowId)).toEqual(before.row);
    expect(await orgRow(org.organizationId)).toEqual(before.org);
  });

  it("the host refuses (404 step_not_found, 409 step_not_completed): the hold is given back as it was", async () => {
    const org = await meteredOrg(HOLD * 3);
    const ended = await run(org.organizationId, (runId) => [usage(runId, 10), finished(runId, "completed")]);
    const going = await run(org.organizationId, (runId) => [usage(runId, 3)]);
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 3 - 10, reserved: HOLD });
    for (const [status, code] of [
      [404, "step_not_found"],
      [409, "step_not_completed"],
    ] as const) {
      resetAnswer = () => ({ status, code });
      for (const { workflowId } of [ended, going]) {
        const before = await row(workflowId);
        const calls = resetCalls;
        const res = await reset(org.key, workflowId);
        expect(res.status).toBe(status);
        expect(errorCodeOf(await res.json())).toBe(code);
        expect(resetCalls).toBe(calls + 1);
        expect(await row(workflowId)).toEqual(before);
        expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 3 - 10, reserved: HOLD });
      }
    }
    // The refused resets left nothing behind: the running run is still charged its own usage only,
    // and a reset the host accepts next holds once.
    await runStream(env, going.workflowId).record(going.workflowId, [finished(going.runId, "completed")]);
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 3 - 13, reserved: 0 });
    resetAnswer = () => ({ runId: crypto.randomUUID() });
    expect((await reset(org.key, ended.workflowId)).status).toBe(200);
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 3 - 13, reserved: HOLD });
  });
});
