/**
 * Credits of a reset (POST /workflow/:id/reset and /workflow/:id/runs/:rid/reset): a reset of a
 * metered organization's run holds credits like a start, before the host is asked, and the new
 * run's end is charged only what the new run used. The host is scripted in this isolate (edge
 * tests have none): the route's and the run DO's host calls go through this file's fetch, which
 * counts the reset requests. Happy paths, then refusals.
 */
import { createExecutionContext, evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { EventLog } from "../../durable-objects/run-stream/event-log.ts";
import { MAX_ROWS_PER_BATCH } from "../../durable-objects/run-stream/projection.ts";
import type { ResetMark } from "../../durable-objects/run-stream/reset-mark.ts";
import type { StartCommand } from "../../durable-objects/run-stream/run-starter.ts";
import type { RunStream } from "../../durable-objects/run-stream.ts";
import app from "../../src/index.ts";
import { runStream } from "../../src/run-stream-client.ts";
import { HOST_PATHS, type RunResultResponse } from "../../src/shared/host-api.ts";
import type { RunEvent } from "../../src/shared/run-event-schema.ts";
import { loseAnswersInPlace } from "../support/d1-intercept.ts";
import {
  admin,
  createPromptWorkflow,
  call,
  errorCodeOf,
  attributeEvent,
  llmUsageEvent,
  meteredOrg,
  orgRow,
  scriptedStart,
  scriptHost,
  seedCatalog,
  seedOrganization,
} from "./helpers.ts";
import { aroundDurableObjectCalls } from "./durable-object-calls.ts";
import { closeEvent, historyEvent } from "./stream-helpers.ts";

const HOLD = Number(env.CODE_RUN_CREDIT_HOLD);

/** How the scripted host answers a reset: the new run's id, a refusal with its status and code, or no answer in time. */
type ResetAnswer =
  | { runId: string; resetFromRunId?: string }
  | { status: number; code: string }
  | { timesOut: true }
  | { proxyStatus: number };
let resetAnswer: () => ResetAnswer = () => ({ status: 404, code: "step_not_found" });
/**
 * What happens on the host's side before it answers a reset, given the workflow and the run it
 * replaces: Temporal has terminated that run, so its end may reach the DO before the answer does.
 */
let duringReset: (workflowId: string, replacedRunId: string) => Promise<void> = async () => {};
let resetCalls = 0;
/** What the scripted host says is the workflow's latest run (its result call), for the DO's alarm. */
let latestRun: ((workflowId: string) => RunResultResponse) | null = null;
/** When set, the scripted host's answer to a result call waits for it. */
let resultGate: Promise<void> | null = null;
/** Result calls the scripted host has had (answered or waiting at the gate). */
let resultCalls = 0;
let restoreHost: () => void;

beforeAll(async () => {
  await seedCatalog();
  restoreHost = scriptHost(async (request, path) => {
    if (path === HOST_PATHS.start) {
      return Response.json(await scriptedStart(request));
    }
    if (path.endsWith("/reset")) {
      resetCalls++;
      const workflowId = decodeURIComponent(path.split("/").at(-2)!);
      const pinned = ((await request.json()) as { runId?: string }).runId;
      const answer = resetAnswer();
      const previous = await env.DB.prepare("SELECT temporal_run_id FROM runs WHERE temporal_workflow_id = ?")
        .bind(workflowId)
        .first<{ temporal_run_id: string }>();
      await duringReset(workflowId, previous!.temporal_run_id);
      if ("code" in answer) return Response.json({ error: { code: answer.code, message: "scripted refusal" } }, { status: answer.status });
      // Something in front of the host (an access proxy, a tunnel): no host error body.
      if ("proxyStatus" in answer) return new Response("Forbidden", { status: answer.proxyStatus });
      // What fetch throws when the route's AbortSignal.timeout (RESET_HOST_TIMEOUT_MS) fires.
      if ("timesOut" in answer) throw new DOMException("The operation was aborted due to timeout", "TimeoutError");
      // As the host does: the reset starts from the pinned run, else from the current one (the
      // workflow's, which may be a run the edge has not recorded yet: `resetFromRunId`).
      return Response.json({
        workflowId,
        runId: answer.runId,
        resetFromRunId: answer.resetFromRunId ?? pinned ?? previous!.temporal_run_id,
      });
    }
    if (latestRun && path.endsWith("/result")) {
      resultCalls++;
      await resultGate;
      return Response.json(latestRun(decodeURIComponent(path.split("/").at(-2)!)));
    }
    throw new TypeError("connection refused");
  });
});
afterAll(() => restoreHost());
afterEach(() => {
  resetAnswer = () => ({ status: 404, code: "step_not_found" });
  duringReset = async () => {};
  latestRun = null;
  resultGate = null;
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

/** A `hello` run (or `target`'s) started through its DO (the scripted host confirms it), then the given events. */
async function run(
  organizationId: string,
  events: (runId: string) => RunEvent[],
  target: StartCommand["target"] = { kind: "code", by: { name: "hello" }, input: { name: "Ada" } },
) {
  const runUuid = crypto.randomUUID();
  const c: StartCommand = { organizationId, workflowId: `hello-${runUuid}`, runUuid, target };
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
/** The run's own end settled its own hold (of HOLD, in an organization given HOLD * 2): its `tokens` (10 unless said) charged once, nothing held. */
async function expectOwnRunCharged(workflowId: string, runId: string, organizationId: string, tokens = 10) {
  expect(await row(workflowId)).toEqual({
    status: "completed",
    temporal_run_id: runId,
    credit_hold: 0,
    credits_charged: tokens,
    tokens_total: tokens,
  });
  expect(await orgRow(organizationId)).toEqual({ balance: HOLD * 2 - tokens, reserved: 0 });
  expect(await charges(organizationId)).toEqual([{ amount: -tokens, note: `${tokens} tokens` }]);
}
/** The reset's run (after a run that used 10 tokens, in an organization given HOLD + 50) ended charged once for the 7 tokens it added. */
async function expectResetRunCharged(workflowId: string, newRunId: string, organizationId: string) {
  expect(await row(workflowId)).toMatchObject({ status: "completed", temporal_run_id: newRunId, credit_hold: 0, credits_charged: 7 });
  expect(await orgRow(organizationId)).toEqual({ balance: HOLD + 43, reserved: 0 });
  expect(await charges(organizationId)).toEqual([{ amount: -7, note: "7 tokens" }]);
}
/** A published prompt workflow of the organization with this template and output cap; its id. */
const publishedPrompt = (organizationId: string, template: string, maxOutputTokens: number) =>
  createPromptWorkflow(organizationId, { template, maxOutputTokens });

const reset = (key: string, workflowId: string, runId?: string) =>
  call(runId ? `/workflow/${workflowId}/runs/${runId}/reset` : `/workflow/${workflowId}/reset`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify({ stepName: "a" }),
  });

/** The reset is 402 insufficient_credits (its body naming `says`) and the host is never asked. */
async function expectRefusedForCredits(key: string, workflowId: string, says: string) {
  resetAnswer = () => ({ runId: crypto.randomUUID() });
  const calls = resetCalls;
  const res = await reset(key, workflowId);
  expect(res.status).toBe(402);
  const body = await res.json();
  expect(errorCodeOf(body)).toBe("insufficient_credits");
  expect(JSON.stringify(body)).toContain(says);
  expect(resetCalls).toBe(calls);
}

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

  it("an unmetered organization's reset of a run still going: the replaced run's end that comes first waits too (no end in D1, so no webhook for it), and the new run is the row's", async () => {
    const org = await seedOrganization();
    const { workflowId, runId } = await run(org.organizationId, (id) => [usage(id, 10)]);
    const newRunId = crypto.randomUUID();
    resetAnswer = () => ({ runId: newRunId });
    let during: unknown = null;
    duringReset = async (id, replaced) => {
      await runStream(env, id).record(id, [terminated(replaced)]);
      during = await row(id);
    };
    expect((await reset(org.key, workflowId, runId)).status).toBe(200);
    // Before: the end went to D1 at once (the run's row `terminated`, its webhook due) while the reset's run went on.
    expect(during).toMatchObject({ status: "running", temporal_run_id: runId });
    expect(await row(workflowId)).toMatchObject({ status: "running", temporal_run_id: newRunId });
  });

  it("an unmetered organization's reset the host refuses: its mark ends with the refusal, and the run's own end is projected at once", async () => {
    const org = await seedOrganization();
    const { workflowId, runId, stub } = await run(org.organizationId, (id) => [usage(id, 10)]);
    resetAnswer = () => ({ status: 404, code: "step_not_found" });
    expect((await reset(org.key, workflowId, runId)).status).toBe(404);
    await stub.record(workflowId, [finished(runId, "completed")]);
    expect(await row(workflowId)).toMatchObject({ status: "completed", temporal_run_id: runId });
  });
});

describe("a reset refused", () => {
  it("402 insufficient_credits when the organization cannot cover the hold: the host is never asked, nothing changes", async () => {
    const org = await meteredOrg(HOLD + 5);
    const { workflowId } = await run(org.organizationId, (runId) => [usage(runId, 10), finished(runId, "completed")]);
    const before = { row: await row(workflowId), org: await orgRow(org.organizationId) };
    expect(before.org).toEqual({ balance: HOLD - 5, reserved: 0 });
    await expectRefusedForCredits(org.key, workflowId, `has ${HOLD - 5}`);
    expect(await row(workflowId)).toEqual(before.row);
    expect(await orgRow(org.organizationId)).toEqual(before.org);
  });

  it("security: 429 too_many_open_runs for a reset that would open an ended run again past MAX_OPEN_RUNS_PER_ORGANIZATION: the host is never asked, nothing changes", async () => {
    const org = await meteredOrg(HOLD * 3);
    const limit = Number(env.MAX_OPEN_RUNS_PER_ORGANIZATION);
    const ended = await run(org.organizationId, (runId) => [usage(runId, 10), finished(runId, "completed")]);
    const going = await run(org.organizationId, (runId) => [usage(runId, 3)]);
    // With `going`, `limit` runs open: the rest waiting for ever, written straight into D1.
    await env.DB.prepare(
      `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?3)
       INSERT INTO runs (id, organization_id, workflow_id, workflow_name, temporal_workflow_id, status, input)
       SELECT lower(hex(randomblob(16))), ?1, ?2, 'hello', 'open-' || lower(hex(randomblob(16))), 'running', '{}' FROM n`,
    )
      .bind(
        org.organizationId,
        (await env.DB.prepare("SELECT workflow_id FROM runs WHERE temporal_workflow_id = ?")
          .bind(going.workflowId)
          .first<{ workflow_id: string }>())!.workflow_id,
        limit - 1,
      )
      .run();
    const openRuns = () =>
      env.DB.prepare("SELECT open_runs FROM organizations WHERE id = ?").bind(org.organizationId).first<number>("open_runs");
    expect(await openRuns()).toBe(limit);
    const before = { row: await row(ended.workflowId), org: await orgRow(org.organizationId) };
    resetAnswer = () => ({ runId: crypto.randomUUID() });
    const calls = resetCalls;
    for (const runId of [undefined, ended.runId]) {
      const res = await reset(org.key, ended.workflowId, runId);
      expect(res.status).toBe(429);
      expect(await res.json()).toMatchObject({ error: "TooManyOpenRunsError", code: "too_many_open_runs" });
    }
    expect(resetCalls).toBe(calls);
    expect(await row(ended.workflowId)).toEqual(before.row);
    expect(await orgRow(org.organizationId)).toEqual(before.org);
    expect(await openRuns()).toBe(limit);
    // A reset of a run still going opens nothing more: not refused.
    expect((await reset(org.key, going.workflowId)).status).toBe(200);
    expect(await openRuns()).toBe(limit);
    // Once one run ends, the ended run's reset goes through (the refusal left no mark behind).
    await env.DB.prepare(
      "UPDATE runs SET status = 'completed' WHERE organization_id = ? AND temporal_workflow_id LIKE 'open-%' AND rowid = (SELECT MIN(rowid) FROM runs WHERE organization_id = ? AND temporal_workflow_id LIKE 'open-%')",
    )
      .bind(org.organizationId, org.organizationId)
      .run();
    expect((await reset(org.key, ended.workflowId)).status).toBe(200);
    expect(await openRuns()).toBe(limit);
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

describe("a reset hold whose D1 answer is lost", () => {
  it("the UPDATE was applied but its answer never came: the reset is an error, the host is never asked, and the hold is put back as it was", async () => {
    const org = await meteredOrg(HOLD * 3);
    const ended = await run(org.organizationId, (runId) => [usage(runId, 10), finished(runId, "completed")]);
    const before = await row(ended.workflowId);
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 3 - 10, reserved: 0 });
    resetAnswer = () => ({ runId: crypto.randomUUID() });
    const calls = resetCalls;
    const restore = loseAnswersInPlace(env.DB, /UPDATE runs SET credit_hold = \?1, credit_tokens_base = tokens_total/, async () => {
      throw new Error("D1_ERROR: Network connection lost.");
    });
    let status: number;
    try {
      status = (await reset(org.key, ended.workflowId)).status;
    } finally {
      restore();
    }
    expect(status).toBe(500);
    expect(resetCalls).toBe(calls);
    expect(await row(ended.workflowId)).toEqual(before);
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 3 - 10, reserved: 0 });
    // Nothing is left pending: the next reset holds once and is charged as usual.
    expect((await reset(org.key, ended.workflowId)).status).toBe(200);
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 3 - 10, reserved: HOLD });
  });
});

describe("resets at once (two routes waiting on the host together)", () => {
  /**
   * Holds every reset at the host until `count` of them are there, so their waits overlap. (Each
   * route runs in its own request context, where a promise another one resolves is never seen:
   * the waiting is polled.)
   */
  function overlapResets(count: number) {
    const state = { arrived: 0, overlapped: false };
    duringReset = async () => {
      state.arrived++;
      // Bounded, so a reset that never gets here (refused before the host) fails the test's assertions, not its timeout.
      const deadline = Date.now() + 2_000;
      while (state.arrived < count && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
      if (state.arrived >= count) state.overlapped = true;
    };
    return state;
  }

  it("both refused: the hold goes back as it was, not left reserved for good", async () => {
    const org = await meteredOrg(HOLD * 2);
    const ended = await run(org.organizationId, (runId) => [usage(runId, 10), finished(runId, "completed")]);
    const before = await row(ended.workflowId);
    const overlap = overlapResets(2);
    const answers = await Promise.all([reset(org.key, ended.workflowId), reset(org.key, ended.workflowId)]);
    expect(answers.map((res) => res.status)).toEqual([404, 404]);
    expect(overlap.overlapped, "both resets waited at the host together").toBe(true);
    expect(await row(ended.workflowId)).toEqual(before);
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 2 - 10, reserved: 0 });
    await runInDurableObject(ended.stub, (instance: RunStream) => {
      expect((instance as unknown as { parts: { resetMark: ResetMark } }).parts.resetMark.get()).toBeNull();
    });
  });

  it("one refused, one accepted: the accepted reset's run keeps the hold and is charged once for what it adds", async () => {
    const org = await meteredOrg(HOLD * 2);
    const ended = await run(org.organizationId, (runId) => [usage(runId, 10), finished(runId, "completed")]);
    const newRunId = crypto.randomUUID();
    const answers: ResetAnswer[] = [{ status: 404, code: "step_not_found" }, { runId: newRunId }];
    resetAnswer = () => answers.shift()!;
    const overlap = overlapResets(2);
    const statuses = (await Promise.all([reset(org.key, ended.workflowId), reset(org.key, ended.workflowId)])).map((res) => res.status);
    expect(statuses.sort()).toEqual([200, 404]);
    expect(overlap.overlapped, "both resets waited at the host together").toBe(true);
    expect(await row(ended.workflowId)).toMatchObject({ temporal_run_id: newRunId, credit_hold: HOLD });
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 2 - 10, reserved: HOLD });
    await ended.stub.record(ended.workflowId, [usage(newRunId, 7), finished(newRunId, "completed")]);
    expect(await row(ended.workflowId)).toMatchObject({ status: "completed", credit_hold: 0, credits_charged: 17 });
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 2 - 17, reserved: 0 });
    expect(await charges(org.organizationId)).toEqual([
      { amount: -10, note: "10 tokens" },
      { amount: -7, note: "7 tokens" },
    ]);
  });
});

describe("two resets whose host answers reach the edge out of order", () => {
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  /**
   * A metered run still going (10 tokens so far, in an organization given HOLD + 50), reset twice,
   * 20 ms apart. The host answers the first late with A (reset from the run) and the second early
   * with B, reset from A: what Temporal does when the second reset reaches it after A exists but
   * before A's answer is back at the edge. `inOrder`: the first is answered first (A, then B).
   * `early`: what happens before the early answer goes out; `meanwhile`: what happens after the
   * early answer is recorded and before the late one goes out.
   */
  async function twoResets(
    inOrder: boolean,
    options: {
      early?: (ids: { workflowId: string; runA: string; runB: string }) => Promise<void>;
      meanwhile?: (ids: { key: string; workflowId: string; runB: string; answers: ResetAnswer[] }) => Promise<void>;
    } = {},
  ) {
    const org = await meteredOrg(HOLD + 50);
    const { workflowId, runId: orig, stub } = await run(org.organizationId, (id) => [usage(id, 10)]);
    const runA = crypto.randomUUID();
    const runB = crypto.randomUUID();
    const answers: ResetAnswer[] = [
      { runId: runA, resetFromRunId: orig },
      { runId: runB, resetFromRunId: runA },
    ];
    resetAnswer = () => answers.shift()!;
    const done = { first: false, second: false, meanwhile: !options.meanwhile };
    let arrived = 0;
    duringReset = async () => {
      const call = arrived++;
      if (call > 1) return; // a reset of `meanwhile`'s
      const first = call === 0;
      // The late answer waits until the other route has answered (and recorded its run), at most 5 s;
      // polled, as a promise resolved in another request's context is never seen in this one.
      const deadline = Date.now() + 5_000;
      const other = () => (first ? done.second : done.first);
      if (first !== inOrder) while (!(other() && done.meanwhile) && Date.now() < deadline) await sleep(5);
      else {
        await sleep(50);
        await options.early?.({ workflowId, runA, runB });
      }
    };
    const firstCall = reset(org.key, workflowId).then((res) => {
      done.first = true;
      return res;
    });
    await sleep(20);
    const secondCall = reset(org.key, workflowId).then((res) => {
      done.second = true;
      return res;
    });
    if (options.meanwhile) {
      await (inOrder ? firstCall : secondCall);
      await options.meanwhile({ key: org.key, workflowId, runB, answers });
      done.meanwhile = true;
    }
    const [first, second] = await Promise.all([firstCall, secondCall]);
    expect([first.status, second.status]).toEqual([200, 200]);
    expect(await first.json()).toEqual({ workflowId, runId: runA });
    expect(await second.json()).toEqual({ workflowId, runId: runB });
    return { org, workflowId, orig, runA, runB, stub };
  }

  /** The row follows B, A's and the run's terminated ends settle nothing, and B's end settles the one hold, charged its 7 tokens. */
  async function expectFollowsB({ org, workflowId, orig, runA, runB, stub }: Awaited<ReturnType<typeof twoResets>>) {
    expect(await row(workflowId)).toMatchObject({ status: "running", temporal_run_id: runB, credit_hold: HOLD });
    await runInDurableObject(stub, (instance: RunStream) => {
      const parts = (instance as unknown as { parts: { log: EventLog; resetMark: ResetMark } }).parts;
      expect(parts.log.latestRunId()).toBe(runB);
      // The lineage is kept whatever the order: B was reset from A, A from the run.
      expect(parts.log.lineage(runB)).toEqual([runB, runA, orig]);
      expect(parts.resetMark.get()).toBeNull();
    });
    await stub.record(workflowId, [terminated(orig), terminated(runA)]);
    expect(await row(workflowId)).toMatchObject({ status: "running", temporal_run_id: runB, credit_hold: HOLD });
    await stub.record(workflowId, [usage(runB, 7), closeEvent(runB, 2) as RunEvent, finished(runB, "completed")]);
    await expectResetRunCharged(workflowId, runB, org.organizationId);
    const get = (path: string) => call(path, { headers: { authorization: `Bearer ${org.key}` } }).then((res) => res.json());
    expect(await get(`/workflow/${workflowId}/status`)).toMatchObject({ workflowId, runId: runB, status: "completed" });
    expect(await get(`/workflow/${workflowId}/result`)).toMatchObject({
      workflowId,
      runId: runB,
      status: "completed",
      output: { greeting: "Hello, Ada" },
    });
  }

  for (const inOrder of [false, true]) {
    it(`${inOrder ? "answered in order (A, then B)" : "the second (B, reset from A) answered before the first (A)"}: the row follows B, the terminated ends of the run and A settle nothing, and B's end settles the one hold, charged what B used`, async () => {
      await expectFollowsB(await twoResets(inOrder));
    });
  }

  it("A's events reach the DO (the relay) before B's answer, and A's answer comes last: the row follows B all the same", async () => {
    const early = async ({ workflowId, runA }: { workflowId: string; runA: string }) => {
      await runStream(env, workflowId).record(workflowId, [historyEvent(runA, 1) as RunEvent]);
    };
    await expectFollowsB(await twoResets(false, { early }));
  });

  it("A's late answer comes while a third reset (of B) waits on the host: it ends not that reset's mark, so B's terminated end waits, and C's end settles the one hold", async () => {
    const { org, workflowId, runB, stub } = await twoResets(false, {
      meanwhile: async ({ key, workflowId, runB, answers }) => {
        answers.push({ status: 503, code: "unavailable" });
        expect((await reset(key, workflowId, runB)).status).toBe(504);
      },
    });
    // Temporal reset B into C: B's terminated end waits for the third reset's outcome, and settles nothing.
    await stub.record(workflowId, [terminated(runB)]);
    expect(await row(workflowId)).toMatchObject({ status: "running", temporal_run_id: runB, credit_hold: HOLD });
    const runC = crypto.randomUUID();
    await stub.record(workflowId, [usage(runC, 7)]);
    await staleMarkAlarm(stub);
    expect(await row(workflowId)).toMatchObject({ status: "running", temporal_run_id: runC, credit_hold: HOLD });
    await stub.record(workflowId, [finished(runC, "completed")]);
    await expectResetRunCharged(workflowId, runC, org.organizationId);
  });
});

describe("a reset the host answers with an error", () => {
  it("a refusal the edge has no code for (a 4xx: 502 host_error) reset nothing: the hold is given back", async () => {
    const org = await meteredOrg(HOLD * 2);
    const ended = await run(org.organizationId, (runId) => [usage(runId, 10), finished(runId, "completed")]);
    const before = await row(ended.workflowId);
    resetAnswer = () => ({ status: 422, code: "something_new" });
    const res = await reset(org.key, ended.workflowId);
    expect(res.status).toBe(502);
    expect(errorCodeOf(await res.json())).toBe("host_error");
    expect(await row(ended.workflowId)).toEqual(before);
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 2 - 10, reserved: 0 });
  });

  it("the host failing on it (its own 500, an error it has no code for) may have reset the run: 504 reset_outcome_unknown, not a 500 a client retries blindly; the hold stays, and a retry holds nothing more", async () => {
    const org = await meteredOrg(HOLD * 2);
    const ended = await run(org.organizationId, (runId) => [usage(runId, 10), finished(runId, "completed")]);
    resetAnswer = () => ({ status: 500, code: "internal" });
    for (let i = 0; i < 2; i++) {
      const res = await reset(org.key, ended.workflowId);
      expect(res.status).toBe(504);
      expect(res.headers.get("retry-after")).toBeNull();
      expect(errorCodeOf(await res.json())).toBe("reset_outcome_unknown");
      expect(await row(ended.workflowId)).toMatchObject({ credit_hold: HOLD });
      expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 2 - 10, reserved: HOLD });
    }
  });

  for (const [what, answer] of [
    ["the host's answer does not come in time", { timesOut: true }],
    ["a 4xx comes from something in front of the host (no host error body)", { proxyStatus: 403 }],
  ] as Array<[string, ResetAnswer]>) {
    it(`${what}: 504 reset_outcome_unknown without Retry-After; the hold stays for the reset that may have happened`, async () => {
      const org = await meteredOrg(HOLD * 2);
      const ended = await run(org.organizationId, (runId) => [usage(runId, 10), finished(runId, "completed")]);
      resetAnswer = () => answer;
      const res = await reset(org.key, ended.workflowId);
      expect(res.status).toBe(504);
      expect(res.headers.get("retry-after")).toBeNull();
      expect(errorCodeOf(await res.json())).toBe("reset_outcome_unknown");
      expect(await row(ended.workflowId)).toMatchObject({ credit_hold: HOLD });
      expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 2 - 10, reserved: HOLD });
    });
  }

  it("the unpinned (deprecated) reset carries Deprecation, Sunset and Link on its errors too; the pinned one does not", async () => {
    const org = await meteredOrg(HOLD * 2);
    const ended = await run(org.organizationId, (runId) => [usage(runId, 10), finished(runId, "completed")]);
    resetAnswer = () => ({ status: 404, code: "step_not_found" });
    const unpinned = await reset(org.key, ended.workflowId);
    expect(unpinned.status).toBe(404);
    expect(unpinned.headers.get("deprecation")).toBe("true");
    expect(unpinned.headers.get("link")).toBe('</workflow/{id}/runs/{rid}/reset>; rel="successor-version"');
    expect(unpinned.headers.get("sunset")).toBeTruthy();
    const pinned = await reset(org.key, ended.workflowId, ended.runId);
    expect(pinned.status).toBe(404);
    expect(pinned.headers.get("deprecation")).toBeNull();
  });
});

/** The end of the run a reset replaces, as Temporal sends it once the reset has terminated it. */
const terminated = (runId: string) => finished(runId, "terminated");

/**
 * A metered run still going (10 tokens so far, in an organization given `credits`), reset while
 * the host's answer never comes (503): meanwhile `end` (the replaced run's end) reaches its DO.
 */
async function resetUnanswered(credits: number, end: (replacedRunId: string) => RunEvent, pinned: boolean) {
  const org = await meteredOrg(credits);
  const { workflowId, runId, stub } = await run(org.organizationId, (id) => [usage(id, 10)]);
  resetAnswer = () => ({ status: 503, code: "unavailable" });
  duringReset = async (id, replaced) => {
    await runStream(env, id).record(id, [end(replaced)]);
  };
  const res = await reset(org.key, workflowId, pinned ? runId : undefined);
  return { org, workflowId, runId, stub, res };
}

describe("the replaced run's end and the reset's new run reach the run's DO in either order", () => {
  /** A metered run still going (10 tokens so far), reset; `deliver` brings the replaced run's end in at its point. */
  async function resetGoingRun(deliver: "before the host answers" | "after the reset is recorded") {
    const org = await meteredOrg(HOLD + 50);
    const { workflowId, runId, stub } = await run(org.organizationId, (id) => [usage(id, 10)]);
    const newRunId = crypto.randomUUID();
    resetAnswer = () => ({ runId: newRunId });
    let duringRow: unknown = null;
    if (deliver === "before the host answers") {
      duringReset = async (id, replaced) => {
        expect(replaced).toBe(runId);
        await runStream(env, id).record(id, [terminated(replaced)]);
        duringRow = await row(id);
      };
    }
    expect((await reset(org.key, workflowId, runId)).status).toBe(200);
    if (deliver === "after the reset is recorded") await stub.record(workflowId, [terminated(runId)]);
    return { org, workflowId, runId, newRunId, stub, duringRow };
  }

  for (const deliver of ["before the host answers", "after the reset is recorded"] as const) {
    it(`the replaced run's terminated end ${deliver}: it settles nothing, and the new run is charged once for what it adds`, async () => {
      const { org, workflowId, runId, newRunId, stub, duringRow } = await resetGoingRun(deliver);
      if (deliver === "before the host answers") {
        // The end waits in the DO: D1 never shows the replaced run's end, the hold is the reset's.
        expect(duringRow).toMatchObject({ status: "running", temporal_run_id: runId, credit_hold: HOLD });
      }
      expect(await row(workflowId)).toMatchObject({ status: "running", temporal_run_id: newRunId, credit_hold: HOLD, tokens_total: 10 });
      expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD + 50, reserved: HOLD });
      await stub.record(workflowId, [usage(newRunId, 7), finished(newRunId, "completed")]);
      expect(await row(workflowId)).toEqual({
        status: "completed",
        temporal_run_id: newRunId,
        credit_hold: 0,
        credits_charged: 7,
        tokens_total: 17,
      });
      expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD + 43, reserved: 0 });
      // One settlement, the new run's: no "run terminated: not charged" row for the replaced run.
      expect(await charges(org.organizationId)).toEqual([{ amount: -7, note: "7 tokens" }]);
      // A late second delivery of the replaced run's end changes nothing.
      await stub.record(workflowId, [terminated(runId)]);
      expect(await row(workflowId)).toMatchObject({ status: "completed", temporal_run_id: newRunId, credits_charged: 7 });
    });
  }

  it("the replaced run's late history and end do not make it the latest run again: no ended run for webhooks, the watchdog keeps watching, a second reset's mark names no successor from them", async () => {
    const { org, workflowId, runId, newRunId, stub } = await resetGoingRun("after the reset is recorded");
    type Parts = { parts: { log: { latestRunId(): string | null }; resetMark: ResetMark } };
    // The relay goes on bringing the replaced run's rows (its history up to the terminated close, an activity's last report).
    await stub.record(workflowId, [usage(runId, 1)]);
    await runInDurableObject(stub, async (instance: RunStream, state) => {
      expect((instance as unknown as Parts).parts.log.latestRunId()).toBe(newRunId);
      // The same after a restart: the log read back from storage agrees.
      expect(new EventLog(state.storage.sql).latestRunId()).toBe(newRunId);
      // Not "settled": the new run is still going, so the watchdog's alarm stays armed.
      expect(await state.storage.getAlarm()).not.toBeNull();
      expect((instance as unknown as { lifecycle: { endedRun(): unknown } }).lifecycle.endedRun()).toBeNull();
    });
    // A status read follows the new run.
    expect(await row(workflowId)).toMatchObject({ status: "running", temporal_run_id: newRunId });
    // A second reset (of the new run) is marked; a late event of the first replaced run arrives meanwhile: it is no successor.
    resetAnswer = () => ({ status: 503, code: "unavailable" });
    expect((await reset(org.key, workflowId, newRunId)).status).toBe(504);
    await stub.record(workflowId, [usage(runId, 1)]);
    await runInDurableObject(stub, (instance: RunStream) => {
      const mark = (instance as unknown as Parts).parts.resetMark.get();
      expect(mark).toMatchObject({ replaces: [newRunId], successor: null });
    });
  });

  it("the host's answer never comes (503) but the reset happened: the replaced run's end waits, the new run's events end the wait, and it is charged", async () => {
    const { org, workflowId, runId, stub, res } = await resetUnanswered(HOLD + 50, terminated, true);
    // Not 503 with Retry-After: a blind retry could reset the new run again.
    expect(res.status).toBe(504);
    expect(res.headers.get("retry-after")).toBeNull();
    const body = (await res.json()) as { error: string; code: string; message: string; workflowId: string };
    expect(body).toMatchObject({ error: "WorkflowResetOutcomeUnknownError", code: "reset_outcome_unknown", workflowId });
    expect(body.message).toContain(`GET /workflow/${workflowId}/status`);
    // The outcome is unknown: the hold stays, and the replaced run's end has not released it.
    expect(await row(workflowId)).toMatchObject({ status: "running", temporal_run_id: runId, credit_hold: HOLD });
    // The relay brings the new run's events (nobody recorded its start): it is the reset's run.
    const newRunId = crypto.randomUUID();
    await stub.record(workflowId, [usage(newRunId, 7)]);
    await stub.record(workflowId, [finished(newRunId, "completed")]);
    await expectResetRunCharged(workflowId, newRunId, org.organizationId);
  });

  it("the host refuses while the run ends on its own: the end waits for the refusal, then settles the run's own hold", async () => {
    const org = await meteredOrg(HOLD * 2);
    const { workflowId, runId, stub } = await run(org.organizationId, (id) => [usage(id, 10)]);
    let duringRow: unknown = null;
    resetAnswer = () => ({ status: 409, code: "step_not_completed" });
    duringReset = async (id, replaced) => {
      await runStream(env, id).record(id, [finished(replaced, "completed")]);
      duringRow = await row(id);
    };
    const res = await reset(org.key, workflowId);
    expect(res.status).toBe(409);
    expect(errorCodeOf(await res.json())).toBe("step_not_completed");
    // While the reset was pending the end waited (the row held the reset's hold, not settled)...
    expect(duringRow).toMatchObject({ status: "running", credit_hold: HOLD });
    // ...and the refusal let it through: charged the run's own tokens from its own hold.
    await expectOwnRunCharged(workflowId, runId, org.organizationId);
    // Nothing of the refused reset is left in the DO: a reset the host accepts next holds again and settles once.
    const newRunId = crypto.randomUUID();
    resetAnswer = () => ({ runId: newRunId });
    duringReset = async () => {};
    expect((await reset(org.key, workflowId)).status).toBe(200);
    await stub.record(workflowId, [usage(newRunId, 4), finished(newRunId, "completed")]);
    expect(await row(workflowId)).toMatchObject({ status: "completed", temporal_run_id: newRunId, credits_charged: 14 });
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 2 - 14, reserved: 0 });
  });

  it("the host refuses a reset of a run still going: the run's later end is projected at once and charged from its own hold", async () => {
    const org = await meteredOrg(HOLD * 2);
    const { workflowId, runId, stub } = await run(org.organizationId, (id) => [usage(id, 10)]);
    resetAnswer = () => ({ status: 404, code: "step_not_found" });
    expect((await reset(org.key, workflowId, runId)).status).toBe(404);
    await stub.record(workflowId, [finished(runId, "completed")]);
    expect(await row(workflowId)).toMatchObject({ status: "completed", credit_hold: 0, credits_charged: 10 });
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 2 - 10, reserved: 0 });
  });
});

describe("usage of a run a reset replaced, reported late (an activity of a terminated run still going, the host's journal after an outage)", () => {
  /** The replaced run's usage, a second report of its step (its first one was `usage(runId, …)`). */
  const lateUsage = (runId: string, tokens: number) =>
    attributeEvent(runId, { activityId: "a", attempt: 1 }, llmUsage(tokens), { n: 2, at: at() });
  const llmUsage = (tokens: number) => (llmUsageEvent("x", tokens, at()).data as { attribute: Record<string, unknown> }).attribute;

  it("a completed run reset, then its late usage: not charged to the reset's run, which is charged only what it used", async () => {
    const org = await meteredOrg(HOLD * 2);
    const { workflowId, runId, stub } = await run(org.organizationId, (id) => [usage(id, 10), finished(id, "completed")]);
    const newRunId = crypto.randomUUID();
    resetAnswer = () => ({ runId: newRunId });
    expect((await reset(org.key, workflowId)).status).toBe(200);
    await stub.record(workflowId, [lateUsage(runId, 100)]);
    await stub.record(workflowId, [usage(newRunId, 7), finished(newRunId, "completed")]);
    expect(await charges(org.organizationId)).toEqual([
      { amount: -10, note: "10 tokens" },
      { amount: -7, note: "7 tokens" },
    ]);
    // Counted in the run's totals (what it used in all), charged nowhere.
    expect(await row(workflowId)).toMatchObject({ status: "completed", credits_charged: 17, tokens_total: 117 });
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 2 - 17, reserved: 0 });
  });

  it("a run reset while going, then its in-flight step's usage and its end: the reset's run is charged only what it used", async () => {
    const org = await meteredOrg(HOLD + 50);
    const { workflowId, runId, stub } = await run(org.organizationId, (id) => [usage(id, 10)]);
    const newRunId = crypto.randomUUID();
    resetAnswer = () => ({ runId: newRunId });
    expect((await reset(org.key, workflowId, runId)).status).toBe(200);
    await stub.record(workflowId, [lateUsage(runId, 100), terminated(runId)]);
    await stub.record(workflowId, [usage(newRunId, 4), finished(newRunId, "completed")]);
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD + 46, reserved: 0 });
    expect(await charges(org.organizationId)).toEqual([{ amount: -4, note: "4 tokens" }]);
  });

  it("the replaced run's usage while the reset waits on the host: not charged to the reset's run either", async () => {
    const org = await meteredOrg(HOLD + 50);
    const { workflowId, runId } = await run(org.organizationId, (id) => [usage(id, 10)]);
    const newRunId = crypto.randomUUID();
    resetAnswer = () => ({ runId: newRunId });
    duringReset = async (id, replaced) => void (await runStream(env, id).record(id, [lateUsage(replaced, 100)]));
    expect((await reset(org.key, workflowId, runId)).status).toBe(200);
    await runStream(env, workflowId).record(workflowId, [usage(newRunId, 4), finished(newRunId, "completed")]);
    expect(await charges(org.organizationId)).toEqual([{ amount: -4, note: "4 tokens" }]);
  });

  it("a completed run's late usage while a reset of it waits on the host, which refuses it: charged to the run as late usage once the refusal is in", async () => {
    const org = await meteredOrg(HOLD * 2);
    const { workflowId } = await run(org.organizationId, (id) => [usage(id, 10), finished(id, "completed")]);
    let duringRow: unknown = null;
    duringReset = async (id, replaced) => {
      await runStream(env, id).record(id, [lateUsage(replaced, 100)]);
      duringRow = await row(id);
    };
    resetAnswer = () => ({ status: 404, code: "step_not_found" });
    expect((await reset(org.key, workflowId)).status).toBe(404);
    // Held back while the reset's outcome was open: had it happened, the usage would be no run's to pay.
    expect(duringRow).toMatchObject({ tokens_total: 10 });
    expect(await row(workflowId)).toMatchObject({ status: "completed", credit_hold: 0, tokens_total: 110, credits_charged: 110 });
    expect(await charges(org.organizationId)).toEqual([
      { amount: -10, note: "10 tokens" },
      { amount: -100, note: "100 tokens reported after the run ended" },
    ]);
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 2 - 110, reserved: 0 });
  });

  it("a run still going: its usage while a reset waits on the host, which refuses it, is charged at the run's own end", async () => {
    const org = await meteredOrg(HOLD + 500);
    const { workflowId, runId, stub } = await run(org.organizationId, (id) => [usage(id, 10)]);
    duringReset = async (id, replaced) => void (await runStream(env, id).record(id, [lateUsage(replaced, 100)]));
    resetAnswer = () => ({ status: 409, code: "step_not_completed" });
    expect((await reset(org.key, workflowId, runId)).status).toBe(409);
    await stub.record(workflowId, [finished(runId, "completed")]);
    expect(await charges(org.organizationId)).toEqual([{ amount: -110, note: "110 tokens" }]);
  });

  it("the reset's run's own usage that reaches the DO before the route records its start is charged (its events name the successor)", async () => {
    const org = await meteredOrg(HOLD + 50);
    const { workflowId, runId } = await run(org.organizationId, (id) => [usage(id, 10)]);
    const newRunId = crypto.randomUUID();
    resetAnswer = () => ({ runId: newRunId });
    duringReset = async (id) => void (await runStream(env, id).record(id, [usage(newRunId, 6)]));
    expect((await reset(org.key, workflowId, runId)).status).toBe(200);
    await runStream(env, workflowId).record(workflowId, [finished(newRunId, "completed")]);
    expect(await charges(org.organizationId)).toEqual([{ amount: -6, note: "6 tokens" }]);
  });

  it("a completed run reset, the reset's run settled, then the replaced run's late usage: no charge 'reported after the run ended' for it", async () => {
    const org = await meteredOrg(HOLD * 2);
    const { workflowId, runId, stub } = await run(org.organizationId, (id) => [usage(id, 10), finished(id, "completed")]);
    const newRunId = crypto.randomUUID();
    resetAnswer = () => ({ runId: newRunId });
    expect((await reset(org.key, workflowId)).status).toBe(200);
    await stub.record(workflowId, [usage(newRunId, 7), finished(newRunId, "completed")]);
    await stub.record(workflowId, [lateUsage(runId, 100)]);
    expect(await charges(org.organizationId)).toEqual([
      { amount: -10, note: "10 tokens" },
      { amount: -7, note: "7 tokens" },
    ]);
    // The reset's run's own late usage still is charged from what its hold has left.
    await stub.record(workflowId, [lateUsage(newRunId, 3)]);
    expect((await charges(org.organizationId)).at(-1)).toEqual({ amount: -3, note: "3 tokens reported after the run ended" });
  });
});

describe("usage held for a pending reset in a backlog D1 takes in several batches (MAX_ROWS_PER_BATCH)", () => {
  const through = (workflowId: string) =>
    env.DB.prepare("SELECT tokens_total, attributes_through_seq AS through FROM runs WHERE temporal_workflow_id = ?")
      .bind(workflowId)
      .first();
  const llmUsage = (tokens: number) => (llmUsageEvent("x", tokens, at()).data as { attribute: Record<string, unknown> }).attribute;
  /** Usage of `runId`'s step `activityId` (each its own source key). */
  const usageOf = (runId: string, activityId: string, tokens: number) =>
    attributeEvent(runId, { activityId, attempt: 1 }, llmUsage(tokens), { at: at() });

  for (const outcome of ["refuses", "accepts"] as const) {
    it(`no later usage reaches D1 ahead of the held one (not even the next batch's), so a DO restarted before the host ${outcome} the reset counts every row once`, async () => {
      const org = await meteredOrg(HOLD * 3);
      const { workflowId, runId: first, stub } = await run(org.organizationId, (id) => [usage(id, 10)]);
      const second = crypto.randomUUID();
      resetAnswer = () => ({ runId: second });
      expect((await reset(org.key, workflowId)).status).toBe(200);
      const before = await through(workflowId);
      expect(before).toMatchObject({ tokens_total: 10 });
      const third = crypto.randomUUID();
      resetAnswer = () => (outcome === "accepts" ? { runId: third } : { status: 404, code: "step_not_found" });
      let during: unknown = null;
      duringReset = async (id) => {
        // One push past a batch: the usage of the run the pending reset may replace (held) is in
        // the first batch, the first run's late usage (replaced by the earlier reset, so its own
        // gate lets it through) in the second.
        const backlog: RunEvent[] = [usageOf(second, "b", 7)];
        for (let i = 0; i < MAX_ROWS_PER_BATCH; i++) {
          const step = { runId: second, activityId: `s${i}`, attempt: 1 };
          backlog.push({ sourceKey: `step:${second}:s${i}:1:completed`, type: "step", at: at(), data: { ...step, state: "completed" } });
        }
        backlog.push(usageOf(first, "late", 100));
        await runStream(env, id).record(id, backlog);
        during = await through(id);
        // The DO goes away before the reset's outcome is in (its mark and the held rows are in its storage).
        await evictDurableObject(runStream(env, id));
      };
      expect((await reset(org.key, workflowId)).status).toBe(outcome === "accepts" ? 200 : 404);
      // Before: the second batch sent the late usage and moved attributes_through_seq past the held row.
      expect(during).toEqual(before);
      const last = outcome === "accepts" ? third : second;
      await stub.record(workflowId, [usageOf(last, "c", 4), finished(last, "completed")]);
      const newest = await runInDurableObject(
        stub,
        (_i: RunStream, state) =>
          state.storage.sql.exec<{ seq: number }>("SELECT MAX(seq) AS seq FROM events WHERE type = 'attribute'").one().seq,
      );
      // Every usage row once (before: the restarted DO read attributes_through_seq back and dropped the held 7 tokens).
      expect(await through(workflowId)).toEqual({ tokens_total: 121, through: newest });
      // The last run is charged only what it used itself: 7 + 4 when the reset was refused, 4 when it happened.
      expect((await charges(org.organizationId)).at(-1)).toEqual(
        outcome === "accepts" ? { amount: -4, note: "4 tokens" } : { amount: -11, note: "11 tokens" },
      );
    }, 30_000);
  }
});

describe("a reset pinned to an earlier run while a later run is the workflow's current one", () => {
  /**
   * Run A (10 tokens) was reset into B, which is still going; a reset pinned to A follows. Temporal
   * terminates B (the current run), not A, and starts C from A: `during` is what reaches the DO
   * before the host answers (B's terminated end, and perhaps C's first events from the relay).
   */
  async function resetFromEarlierRun(during: (workflowId: string, replaced: string, next: string) => RunEvent[]) {
    const org = await meteredOrg(HOLD + 50);
    const { workflowId, runId: first, stub } = await run(org.organizationId, (id) => [usage(id, 10)]);
    const second = crypto.randomUUID();
    resetAnswer = () => ({ runId: second });
    expect((await reset(org.key, workflowId, first)).status).toBe(200);
    await stub.record(workflowId, [terminated(first)]);
    expect(await row(workflowId)).toMatchObject({ status: "running", temporal_run_id: second, credit_hold: HOLD });

    const third = crypto.randomUUID();
    resetAnswer = () => ({ runId: third });
    duringReset = async (id, replaced) => {
      expect(replaced).toBe(second);
      await runStream(env, id).record(id, during(id, replaced, third));
    };
    const res = await reset(org.key, workflowId, first);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ workflowId, runId: third });
    return { org, workflowId, first, second, third, stub };
  }

  for (const [how, during] of [
    ["its terminated end reaches the DO first", (_: string, replaced: string) => [terminated(replaced)]],
    [
      "the relay brings the new run's history first",
      (_: string, replaced: string, next: string) => [terminated(replaced), historyEvent(next, 1) as RunEvent, usage(next, 3)],
    ],
  ] as const) {
    it(`the later run is the one replaced (${how}): the row follows the reset's run, and only that run's end settles the hold`, async () => {
      const { org, workflowId, second, third, stub } = await resetFromEarlierRun(during);
      // Not `terminated` on the later run: the workflow goes on in the reset's run, under the same hold.
      expect(await row(workflowId)).toMatchObject({ status: "running", temporal_run_id: third, credit_hold: HOLD });
      expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD + 50, reserved: HOLD });
      expect(await charges(org.organizationId)).toEqual([]);
      await runInDurableObject(stub, async (instance: RunStream, state) => {
        type Parts = { parts: { log: { latestRunId(): string | null; wasReset(runId: string): boolean }; resetMark: ResetMark } };
        const { log, resetMark } = (instance as unknown as Parts).parts;
        expect(log.latestRunId()).toBe(third);
        expect(log.wasReset(second)).toBe(true);
        expect(resetMark.get()).toBeNull();
        // The same after a restart: the log read back from storage agrees.
        expect(new EventLog(state.storage.sql).latestRunId()).toBe(third);
        expect(new EventLog(state.storage.sql).wasReset(second)).toBe(true);
      });
      // The later run's late history does not make it current again.
      await stub.record(workflowId, [usage(second, 1)]);
      await stub.record(workflowId, [usage(third, how.includes("relay") ? 4 : 7), finished(third, "completed")]);
      expect(await row(workflowId)).toMatchObject({ status: "completed", temporal_run_id: third, credit_hold: 0 });
      expect(await orgRow(org.organizationId)).toMatchObject({ reserved: 0 });
      // One settlement, the reset's run's; neither replaced run's end settled anything.
      expect(await charges(org.organizationId)).toHaveLength(1);
    });
  }
});

describe("a reset holds what a start of the run's kind holds", () => {
  it("a prompt run's reset holds the prompt's hold (its rendered bytes + 64 + maxOutputTokens), not the code run hold", async () => {
    const org = await meteredOrg(HOLD * 2);
    const promptWorkflowId = await publishedPrompt(org.organizationId, "Tell {{audience}} about {{topic}}.", 100);
    const promptHold = new TextEncoder().encode("Tell kids about stars.").byteLength + 64 + 100;
    const { workflowId } = await run(org.organizationId, (id) => [usage(id, 10)], {
      kind: "prompt",
      promptWorkflowId,
      body: { audience: "kids", topic: "stars" },
    });
    // The start held the prompt's hold...
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 2, reserved: promptHold });
    const newRunId = crypto.randomUUID();
    resetAnswer = () => ({ runId: newRunId });
    expect((await reset(org.key, workflowId)).status).toBe(200);
    // ...and so does its reset.
    expect(await row(workflowId)).toMatchObject({ status: "running", temporal_run_id: newRunId, credit_hold: promptHold });
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 2, reserved: promptHold });
    await runStream(env, workflowId).record(workflowId, [usage(newRunId, 30), finished(newRunId, "completed")]);
    expect(await row(workflowId)).toMatchObject({ status: "completed", credit_hold: 0, credits_charged: 30 });
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 2 - 30, reserved: 0 });
  });

  it("a prompt run's reset holds what its start held, though the workflow's template and output cap changed since (Temporal replays the run's own input)", async () => {
    const org = await meteredOrg(HOLD * 2);
    const promptWorkflowId = await publishedPrompt(org.organizationId, "Hi {{name}}", 1000);
    const startHold = new TextEncoder().encode("Hi Ada").byteLength + 64 + 1000;
    const { workflowId } = await run(org.organizationId, (id) => [usage(id, 10), finished(id, "completed")], {
      kind: "prompt",
      promptWorkflowId,
      body: { name: "Ada" },
    });
    expect((await admin("PATCH", `/admin/v1/workflows/${promptWorkflowId}`, { template: "Bye", maxOutputTokens: 16 })).ok).toBe(true);
    const newRunId = crypto.randomUUID();
    resetAnswer = () => ({ runId: newRunId });
    expect((await reset(org.key, workflowId)).status).toBe(200);
    expect(await row(workflowId)).toMatchObject({ status: "running", temporal_run_id: newRunId, credit_hold: startHold });
    // The reset's run may use what the run's own input allows, and is charged for all of it.
    await runStream(env, workflowId).record(workflowId, [usage(newRunId, 900), finished(newRunId, "completed")]);
    expect(await row(workflowId)).toMatchObject({ status: "completed", credit_hold: 0, credits_charged: 910 });
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 2 - 910, reserved: 0 });
  });

  it("402 insufficient_credits names the prompt run's hold when the organization cannot cover it", async () => {
    const org = await meteredOrg(150);
    const promptWorkflowId = await publishedPrompt(org.organizationId, "Hi {{name}}", 50);
    const promptHold = new TextEncoder().encode("Hi Ada").byteLength + 64 + 50;
    const { workflowId } = await run(org.organizationId, (id) => [usage(id, 40), finished(id, "completed")], {
      kind: "prompt",
      promptWorkflowId,
      body: { name: "Ada" },
    });
    expect(await orgRow(org.organizationId)).toEqual({ balance: 110, reserved: 0 });
    await expectRefusedForCredits(org.key, workflowId, `needs ${promptHold} credits`);
  });
});

/** The host's answer about the workflow's latest run: still `runId`, completed (the reset did not happen). */
const stillLatest =
  (runId: string) =>
  (workflowId: string): RunResultResponse => ({
    workflowId,
    runId,
    status: "completed",
    output: { greeting: "Hello, Ada" },
    error: null,
    closeTime: null,
  });

describe("a reset the host confirmed whose record in the run's DO fails (the call lost)", () => {
  it("is still 200 with the new run, never an error a retry would answer by resetting again; the mark stays for the DO to settle with the host", async () => {
    const org = await seedOrganization();
    const { workflowId, runId, stub } = await run(org.organizationId, (id) => [finished(id, "completed")]);
    const newRunId = crypto.randomUUID();
    resetAnswer = () => ({ runId: newRunId });
    const calls = resetCalls;
    const losingRecords = aroundDurableObjectCalls(env.RUN_STREAM, (method, forward) => {
      if (method === "record") throw new Error("Network connection lost.");
      return forward();
    });
    const request = new Request(`http://edge.test/workflow/${workflowId}/runs/${runId}/reset`, {
      method: "POST",
      headers: { authorization: `Bearer ${org.key}`, "content-type": "application/json" },
      body: JSON.stringify({ stepName: "a" }),
    });
    const res = await app.fetch(request, { ...env, RUN_STREAM: losingRecords }, createExecutionContext());
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ workflowId, runId: newRunId });
    expect(resetCalls).toBe(calls + 1);
    // Not recorded by the route: the mark is still pending, for the DO's alarm to settle with the host.
    await runInDurableObject(stub, async (instance: RunStream, state) => {
      expect((instance as unknown as { parts: { resetMark: ResetMark } }).parts.resetMark.get()).not.toBeNull();
      expect(await state.storage.getAlarm()).not.toBeNull();
    });
  });
});

/** As if RESET_PENDING_MS had passed without word from the route: the mark is stale, and the DO's alarm fires. */
async function staleMarkAlarm(stub: DurableObjectStub<RunStream>) {
  await runInDurableObject(stub, (instance: RunStream) => {
    const mark = (instance as unknown as { parts: { resetMark: ResetMark } }).parts.resetMark;
    expect(mark.get()).not.toBeNull();
    mark.set({ ...mark.get()!, until: 0 });
  });
  expect(await runDurableObjectAlarm(stub)).toBe(true);
  await runInDurableObject(stub, (instance: RunStream) => {
    expect((instance as unknown as { parts: { resetMark: ResetMark } }).parts.resetMark.get()).toBeNull();
  });
}

describe("a reset whose answer the route never gets: the run's DO settles its mark with the host", () => {
  it("the host names a new latest run: the DO records it as the reset's run, which is charged what it adds", async () => {
    const { org, workflowId, runId, stub, res } = await resetUnanswered(HOLD + 50, terminated, true);
    expect(res.status).toBe(504);
    expect(await row(workflowId)).toMatchObject({ status: "running", temporal_run_id: runId, credit_hold: HOLD });
    const newRunId = crypto.randomUUID();
    latestRun = (id) => ({ workflowId: id, runId: newRunId, status: "running", output: null, error: null, closeTime: null });
    await staleMarkAlarm(stub);
    expect(await row(workflowId)).toMatchObject({ status: "running", temporal_run_id: newRunId, credit_hold: HOLD });
    await stub.record(workflowId, [usage(newRunId, 7), finished(newRunId, "completed")]);
    await expectResetRunCharged(workflowId, newRunId, org.organizationId);
  });

  it("the host names the replaced run as still the latest: the reset did not happen, the hold goes back and the run's own end settles it", async () => {
    const { org, workflowId, runId, stub, res } = await resetUnanswered(HOLD * 2, (replaced) => finished(replaced, "completed"), false);
    expect(res.status).toBe(504);
    // The run's end waits for the reset's outcome.
    expect(await row(workflowId)).toMatchObject({ status: "running", credit_hold: HOLD });
    latestRun = stillLatest(runId);
    await staleMarkAlarm(stub);
    await expectOwnRunCharged(workflowId, runId, org.organizationId);
  });

  it("two resets pending at once whose holds differ (the prompt changed in between), neither of which happened: the hold goes back as it was before the first", async () => {
    const org = await meteredOrg(HOLD * 2);
    const promptWorkflowId = await publishedPrompt(org.organizationId, "Hi {{name}}", 100);
    const hold = (maxOutputTokens: number) => new TextEncoder().encode("Hi Ada").byteLength + 64 + maxOutputTokens;
    const ended = await run(org.organizationId, (id) => [usage(id, 10), finished(id, "completed")], {
      kind: "prompt",
      promptWorkflowId,
      body: { name: "Ada" },
    });
    // A run started before migration 0022 (no prompt_hold): its resets hold under the current definition, which changes below.
    await env.DB.prepare("UPDATE runs SET prompt_hold = NULL WHERE temporal_workflow_id = ?").bind(ended.workflowId).run();
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 2 - 10, reserved: 0 });
    // The first reset's outcome is unknown (the host unavailable): its hold stays, and its mark.
    resetAnswer = () => ({ status: 503, code: "unavailable" });
    expect((await reset(org.key, ended.workflowId)).status).toBe(504);
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 2 - 10, reserved: hold(100) });
    // The prompt's output cap changes; a second reset holds the new amount, and the host refuses it.
    expect((await admin("PATCH", `/admin/v1/workflows/${promptWorkflowId}`, { maxOutputTokens: 300 })).ok).toBe(true);
    resetAnswer = () => ({ status: 404, code: "step_not_found" });
    expect((await reset(org.key, ended.workflowId)).status).toBe(404);
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 2 - 10, reserved: hold(300) });
    // The first did not happen either: the host names the ended run as still the latest.
    latestRun = stillLatest(ended.runId);
    await staleMarkAlarm(ended.stub);
    expect(await row(ended.workflowId)).toMatchObject({ status: "completed", credit_hold: 0, credits_charged: 10 });
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 2 - 10, reserved: 0 });
  });

  it("the host cannot be asked: the mark stays (the replaced run's end still waits, the hold with it) and is settled once the host answers", async () => {
    const { org, workflowId, runId, stub, res } = await resetUnanswered(HOLD * 2, (replaced) => finished(replaced, "completed"), false);
    expect(res.status).toBe(504);
    latestRun = null; // the scripted host refuses every connection
    await runInDurableObject(stub, (instance: RunStream) => {
      const mark = (instance as unknown as { parts: { resetMark: ResetMark } }).parts.resetMark;
      mark.set({ ...mark.get()!, until: 0 });
    });
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    const kept = await runInDurableObject(stub, (instance: RunStream) =>
      (instance as unknown as { parts: { resetMark: ResetMark } }).parts.resetMark.get(),
    );
    expect(kept?.until).toBeGreaterThan(Date.now());
    expect(await row(workflowId)).toMatchObject({ status: "running", credit_hold: HOLD });
    latestRun = stillLatest(runId);
    await staleMarkAlarm(stub);
    await expectOwnRunCharged(workflowId, runId, org.organizationId);
  });

  it("a reset that arrives while the alarm asks the host about a stale mark waits its turn: its hold and its run survive the stale mark's undo", async () => {
    const org = await meteredOrg(HOLD * 2);
    const ended = await run(org.organizationId, (runId) => [usage(runId, 10), finished(runId, "completed")]);
    resetAnswer = () => ({ status: 503, code: "unavailable" });
    expect((await reset(org.key, ended.workflowId)).status).toBe(504);
    expect(await row(ended.workflowId)).toMatchObject({ credit_hold: HOLD });
    // The first reset did not happen (the host names the ended run as still the latest), but the host is slow to say so.
    let release!: () => void;
    resultGate = new Promise<void>((r) => (release = r));
    latestRun = stillLatest(ended.runId);
    await runInDurableObject(ended.stub, (instance: RunStream) => {
      const mark = (instance as unknown as { parts: { resetMark: ResetMark } }).parts.resetMark;
      mark.set({ ...mark.get()!, until: 0 });
    });
    const asked = resultCalls;
    const alarm = runDurableObjectAlarm(ended.stub);
    // The alarm is at the host, waiting for its answer...
    for (const end = Date.now() + 5_000; resultCalls === asked && Date.now() < end; ) await new Promise((r) => setTimeout(r, 5));
    expect(resultCalls, "the alarm asked the host about the stale mark").toBeGreaterThan(asked);
    // ...when a second reset comes, which the host takes.
    const newRunId = crypto.randomUUID();
    resetAnswer = () => ({ runId: newRunId });
    const second = reset(org.key, ended.workflowId);
    await new Promise((r) => setTimeout(r, 50));
    release();
    await alarm;
    expect((await second).status).toBe(200);
    // The stale mark's undo put back the row's hold from before the first reset (none); the second reset then held again, for its run.
    expect(await row(ended.workflowId)).toMatchObject({ status: "running", temporal_run_id: newRunId, credit_hold: HOLD });
    await ended.stub.record(ended.workflowId, [usage(newRunId, 7), finished(newRunId, "completed")]);
    expect(await row(ended.workflowId)).toMatchObject({ status: "completed", credit_hold: 0, credits_charged: 17 });
  });

  it("an unknown outcome, then a retry the host refuses: the hold stays for the first, whose mark the DO still settles with the host", async () => {
    const org = await meteredOrg(HOLD * 2);
    const ended = await run(org.organizationId, (runId) => [usage(runId, 10), finished(runId, "completed")]);
    resetAnswer = () => ({ status: 500, code: "internal" });
    expect((await reset(org.key, ended.workflowId)).status).toBe(504);
    resetAnswer = () => ({ status: 404, code: "step_not_found" });
    expect((await reset(org.key, ended.workflowId)).status).toBe(404);
    // The first may have started a run: its hold stays, and so does its mark.
    expect(await row(ended.workflowId)).toMatchObject({ credit_hold: HOLD });
    latestRun = stillLatest(ended.runId);
    await staleMarkAlarm(ended.stub);
    // The host says the replaced run is still the latest: neither reset happened, nothing stays reserved.
    expect(await row(ended.workflowId)).toMatchObject({ status: "completed", credit_hold: 0, credits_charged: 10 });
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 2 - 10, reserved: 0 });
  });
});

describe("a late event of the run that continued as new into the one a reset may replace (the host's journal after an outage) names no successor", () => {
  /**
   * Run A (10 tokens) continued as new into B, the workflow's current run, which a reset (not
   * pinned) may replace. While the reset waits on the host, A's step reports late (a second usage
   * and the step's end, from the host's run event journal), then B uses 5 tokens and completes.
   * A is no run the reset started (the log knew it before the reset): B's end and usage still wait
   * for the reset's outcome, and are B's own if it did not happen.
   */
  async function continuedRun(credits: number) {
    const org = await meteredOrg(credits);
    const b = crypto.randomUUID();
    const continued = (a: string) =>
      ({
        sourceKey: `run:${a}:finished`,
        type: "run.finished",
        at: at(),
        data: { runId: a, status: "continued_as_new", newRunId: b },
      }) as RunEvent;
    const { workflowId, runId: a, stub } = await run(org.organizationId, (id) => [usage(id, 10), continued(id)]);
    expect(await row(workflowId)).toMatchObject({ status: "running", temporal_run_id: b, credit_hold: HOLD, tokens_total: 10 });
    return { org, workflowId, a, b, stub };
  }
  const lateOf = (a: string): RunEvent[] => [
    attributeEvent(
      a,
      { activityId: "a", attempt: 1 },
      (llmUsageEvent(a, 3, at()).data as { attribute: Record<string, unknown> }).attribute,
      {
        n: 2,
        at: at(),
      },
    ),
    {
      sourceKey: `step:${a}:a:1:completed`,
      type: "step",
      at: at(),
      data: { runId: a, activityId: "a", attempt: 1, state: "completed" },
    } as RunEvent,
  ];
  /** While the reset waits on the host: A's late events, then B's usage and `bEnd`, in two pushes. */
  const meanwhile = (a: string, b: string, bEnd: RunEvent) => async (workflowId: string, replaced: string) => {
    expect(replaced).toBe(b);
    await runStream(env, workflowId).record(workflowId, lateOf(a));
    await runStream(env, workflowId).record(workflowId, [usage(b, 5), bEnd]);
  };
  /** Whether the log recorded A as a reset's run (a `run.started` naming the run it replaced). */
  const aRecordedAsResetRun = (stub: DurableObjectStub<RunStream>, a: string) =>
    runInDurableObject(
      stub,
      (_: RunStream, state) =>
        state.storage.sql
          .exec("SELECT 1 FROM events WHERE type = 'run.started' AND run_id = ? AND json_extract(data, '$.resetFromRunId') IS NOT NULL", a)
          .toArray().length > 0,
    );

  it("the host refuses: B's end is projected, its row ends completed, and it is charged the usage B (and A, late) reported meanwhile", async () => {
    const { org, workflowId, a, b, stub } = await continuedRun(HOLD * 2);
    resetAnswer = () => ({ status: 409, code: "step_not_completed" });
    duringReset = meanwhile(a, b, finished(b, "completed"));
    expect((await reset(org.key, workflowId)).status).toBe(409);
    expect(await row(workflowId)).toEqual({
      status: "completed",
      temporal_run_id: b,
      credit_hold: 0,
      credits_charged: 18,
      tokens_total: 18,
    });
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 2 - 18, reserved: 0 });
    expect(await charges(org.organizationId)).toEqual([{ amount: -18, note: "18 tokens" }]);
    expect(await aRecordedAsResetRun(stub, a)).toBe(false);
  });

  it("the host accepts, starting C from B: the row follows C, B's terminated end settles nothing, and C's end settles the hold once", async () => {
    const { org, workflowId, a, b, stub } = await continuedRun(HOLD + 50);
    const c = crypto.randomUUID();
    resetAnswer = () => ({ runId: c });
    duringReset = meanwhile(a, b, terminated(b));
    expect((await reset(org.key, workflowId)).status).toBe(200);
    expect(await row(workflowId)).toMatchObject({ status: "running", temporal_run_id: c, credit_hold: HOLD });
    await stub.record(workflowId, [usage(c, 7), finished(c, "completed")]);
    expect(await row(workflowId)).toMatchObject({ status: "completed", temporal_run_id: c, credit_hold: 0 });
    expect(await orgRow(org.organizationId)).toMatchObject({ reserved: 0 });
    expect(await charges(org.organizationId)).toHaveLength(1);
    expect(await aRecordedAsResetRun(stub, a)).toBe(false);
  });

  for (const happened of [false, true]) {
    it(`the route never hears from the host, and the DO settles the mark with it (${happened ? "C is the latest: the reset happened" : "B is still the latest: it did not"}): A is never recorded as the reset's run`, async () => {
      const { org, workflowId, a, b, stub } = await continuedRun(HOLD * 2);
      resetAnswer = () => ({ status: 503, code: "unavailable" });
      duringReset = meanwhile(a, b, finished(b, "completed"));
      expect((await reset(org.key, workflowId)).status).toBe(504);
      // B's end waits for the reset's outcome.
      expect(await row(workflowId)).toMatchObject({ status: "running", temporal_run_id: b, credit_hold: HOLD });
      const c = crypto.randomUUID();
      latestRun = happened
        ? (id) => ({ workflowId: id, runId: c, status: "running", output: null, error: null, closeTime: null })
        : stillLatest(b);
      await staleMarkAlarm(stub);
      expect(await aRecordedAsResetRun(stub, a)).toBe(false);
      if (happened) {
        expect(await row(workflowId)).toMatchObject({ status: "running", temporal_run_id: c, credit_hold: HOLD });
        await stub.record(workflowId, [usage(c, 7), finished(c, "completed")]);
        expect(await row(workflowId)).toMatchObject({ status: "completed", temporal_run_id: c, credit_hold: 0 });
        expect(await charges(org.organizationId)).toHaveLength(1);
      } else {
        expect(await row(workflowId)).toEqual({
          status: "completed",
          temporal_run_id: b,
          credit_hold: 0,
          credits_charged: 18,
          tokens_total: 18,
        });
        expect(await charges(org.organizationId)).toEqual([{ amount: -18, note: "18 tokens" }]);
      }
      expect(await orgRow(org.organizationId)).toMatchObject({ reserved: 0 });
    });
  }
});

describe("the run a reset may replace continues as new while the reset waits on the host: the run it continued into is one the reset may replace too, not the reset's run", () => {
  /**
   * Run B (10 tokens) is the workflow's current run, and a reset (not pinned) of B is marked. The
   * host has pinned B (its history read) when B continues as new into B2 (B reports 5 more tokens
   * and its `continued_as_new` end naming B2), and B2 uses 3 tokens. Temporal's reset of B then
   * terminates the workflow's current run, B2, and starts C; refused, it changes nothing and B2 goes on.
   * B2 is new to the log, but it is no run the reset started: its end and usage wait for the
   * reset's outcome like B's, and its lineage (B's outcome names it) says so.
   */
  async function continuesDuringReset(credits: number) {
    const org = await meteredOrg(credits);
    const { workflowId, runId: b, stub } = await run(org.organizationId, (id) => [usage(id, 10)]);
    return { org, workflowId, b, b2: crypto.randomUUID(), stub };
  }
  /** B's second usage report (its first is `usage(b, 10)`), then its end continuing as new into B2. */
  const continued = (b: string, b2: string): RunEvent[] => [
    attributeEvent(
      b,
      { activityId: "a", attempt: 1 },
      (llmUsageEvent(b, 5, at()).data as { attribute: Record<string, unknown> }).attribute,
      {
        n: 2,
        at: at(),
      },
    ),
    {
      sourceKey: `run:${b}:finished`,
      type: "run.finished",
      at: at(),
      data: { runId: b, status: "continued_as_new", newRunId: b2 },
    } as RunEvent,
  ];
  /** While the reset waits on the host: B continues as new into B2, which uses 3 tokens, then `b2End` (if any), in pushes of their own. */
  const meanwhile = (b: string, b2: string, b2End: RunEvent | null) => async (workflowId: string, replaced: string) => {
    expect(replaced).toBe(b);
    await runStream(env, workflowId).record(workflowId, continued(b, b2));
    await runStream(env, workflowId).record(workflowId, [usage(b2, 3)]);
    if (b2End) await runStream(env, workflowId).record(workflowId, [b2End]);
  };
  /** Whether the log recorded B2 as a reset's run (a `run.started` naming a run it replaced). */
  const recordedAsResetRun = (stub: DurableObjectStub<RunStream>, runId: string) =>
    runInDurableObject(
      stub,
      (_: RunStream, state) =>
        state.storage.sql
          .exec(
            "SELECT 1 FROM events WHERE type = 'run.started' AND run_id = ? AND json_extract(data, '$.resetFromRunId') IS NOT NULL",
            runId,
          )
          .toArray().length > 0,
    );
  /** C, the reset's run, is the row's with the reset's hold; its 7 tokens are all it is charged when it completes. */
  async function expectCCharged(workflowId: string, c: string, stub: DurableObjectStub<RunStream>, organizationId: string) {
    expect(await row(workflowId)).toMatchObject({ status: "running", temporal_run_id: c, credit_hold: HOLD, tokens_total: 18 });
    expect(await orgRow(organizationId)).toEqual({ balance: HOLD + 50, reserved: HOLD });
    await stub.record(workflowId, [usage(c, 7), finished(c, "completed")]);
    expect(await row(workflowId)).toEqual({
      status: "completed",
      temporal_run_id: c,
      credit_hold: 0,
      credits_charged: 7,
      tokens_total: 25,
    });
    expect(await orgRow(organizationId)).toEqual({ balance: HOLD + 43, reserved: 0 });
    expect(await charges(organizationId)).toEqual([{ amount: -7, note: "7 tokens" }]);
  }

  it("the host refuses: B2's end, which came meanwhile, waits for the refusal, then settles the run's own hold; B2's and B's usage are charged", async () => {
    const { org, workflowId, b, b2 } = await continuesDuringReset(HOLD * 2);
    resetAnswer = () => ({ status: 409, code: "step_not_completed" });
    let duringRow: unknown = null;
    duringReset = async (id, replaced) => {
      await meanwhile(b, b2, finished(b2, "completed"))(id, replaced);
      duringRow = await row(id);
    };
    expect((await reset(org.key, workflowId)).status).toBe(409);
    // While the reset waited, the row followed B2 (B's hand-over) but B2's end did not settle the reset's hold.
    expect(duringRow).toMatchObject({ status: "running", temporal_run_id: b2, credit_hold: HOLD });
    // B2 went on (no reset happened) and completed: its end settles the run's own hold, all 18 tokens charged once.
    await expectOwnRunCharged(workflowId, b2, org.organizationId, 18);
  });

  it("the host accepts, starting C from B (Temporal terminated B2): B2's terminated end settles nothing, the row follows C, which is charged once for what it adds", async () => {
    const { org, workflowId, b, b2, stub } = await continuesDuringReset(HOLD + 50);
    const c = crypto.randomUUID();
    resetAnswer = () => ({ runId: c });
    let duringRow: unknown = null;
    duringReset = async (id, replaced) => {
      await meanwhile(b, b2, terminated(b2))(id, replaced);
      duringRow = await row(id);
    };
    expect((await reset(org.key, workflowId)).status).toBe(200);
    expect(duringRow).toMatchObject({ status: "running", temporal_run_id: b2, credit_hold: HOLD });
    await expectCCharged(workflowId, c, stub, org.organizationId);
    expect(await recordedAsResetRun(stub, b2)).toBe(false);
  });

  it("the host accepts, and C's usage reaches the DO before the route records C's start, B2's terminated end only after it: the row moves from B2 to C, and B2's end settles nothing", async () => {
    const { org, workflowId, b, b2, stub } = await continuesDuringReset(HOLD + 50);
    const c = crypto.randomUUID();
    resetAnswer = () => ({ runId: c });
    duringReset = async (id, replaced) => {
      await meanwhile(b, b2, null)(id, replaced);
      await runStream(env, id).record(id, [usage(c, 7)]);
    };
    expect((await reset(org.key, workflowId)).status).toBe(200);
    expect(await row(workflowId)).toMatchObject({ status: "running", temporal_run_id: c, credit_hold: HOLD });
    await stub.record(workflowId, [terminated(b2)]);
    expect(await row(workflowId)).toMatchObject({ status: "running", temporal_run_id: c, credit_hold: HOLD });
    await stub.record(workflowId, [finished(c, "completed")]);
    expect(await row(workflowId)).toMatchObject({ status: "completed", temporal_run_id: c, credit_hold: 0, credits_charged: 7 });
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD + 43, reserved: 0 });
    expect(await charges(org.organizationId)).toEqual([{ amount: -7, note: "7 tokens" }]);
  });

  it("the route never hears from the host, which reset B (C is the latest): B2 is not taken for the reset's run; the DO asks the host, and the row follows C", async () => {
    const { org, workflowId, b, b2, stub } = await continuesDuringReset(HOLD + 50);
    resetAnswer = () => ({ status: 503, code: "unavailable" });
    duringReset = meanwhile(b, b2, terminated(b2));
    expect((await reset(org.key, workflowId)).status).toBe(504);
    // B2's terminated end waits for the reset's outcome.
    expect(await row(workflowId)).toMatchObject({ status: "running", temporal_run_id: b2, credit_hold: HOLD });
    const c = crypto.randomUUID();
    latestRun = (id) => ({ workflowId: id, runId: c, status: "running", output: null, error: null, closeTime: null });
    const asked = resultCalls;
    await staleMarkAlarm(stub);
    expect(resultCalls).toBe(asked + 1);
    expect(await recordedAsResetRun(stub, b2)).toBe(false);
    await expectCCharged(workflowId, c, stub, org.organizationId);
  });

  it("the route never hears from the host, which did not reset (B2 is still the latest, and completed): the hold goes back, and B2's end settles the run's own hold", async () => {
    const { org, workflowId, b, b2, stub } = await continuesDuringReset(HOLD * 2);
    resetAnswer = () => ({ status: 503, code: "unavailable" });
    duringReset = meanwhile(b, b2, finished(b2, "completed"));
    expect((await reset(org.key, workflowId)).status).toBe(504);
    expect(await row(workflowId)).toMatchObject({ status: "running", temporal_run_id: b2, credit_hold: HOLD });
    latestRun = stillLatest(b2);
    const asked = resultCalls;
    await staleMarkAlarm(stub);
    expect(resultCalls).toBe(asked + 1);
    expect(await recordedAsResetRun(stub, b2)).toBe(false);
    // B2 went on (no reset happened) and completed: its end settles the run's own hold, all 18 tokens charged once.
    await expectOwnRunCharged(workflowId, b2, org.organizationId, 18);
  });

  for (const happened of [true, false]) {
    it(`B2's usage reaches the DO before B's hand-over names it (the host's journal ahead of its relay), and the route never hears from the host (${happened ? "C is the latest" : "B2 is still the latest"}): the hand-over takes B2 back from being the reset's run, and the DO asks the host`, async () => {
      const { org, workflowId, b, b2, stub } = await continuesDuringReset(HOLD * 2);
      resetAnswer = () => ({ status: 503, code: "unavailable" });
      duringReset = async (id, replaced) => {
        expect(replaced).toBe(b);
        await runStream(env, id).record(id, [usage(b2, 3)]);
        await runStream(env, id).record(id, continued(b, b2));
        await runStream(env, id).record(id, [happened ? terminated(b2) : finished(b2, "completed")]);
      };
      expect((await reset(org.key, workflowId)).status).toBe(504);
      // B2's end waits for the reset's outcome.
      expect(await row(workflowId)).toMatchObject({ status: "running", temporal_run_id: b2, credit_hold: HOLD });
      const c = crypto.randomUUID();
      latestRun = happened
        ? (id) => ({ workflowId: id, runId: c, status: "running", output: null, error: null, closeTime: null })
        : stillLatest(b2);
      const asked = resultCalls;
      await staleMarkAlarm(stub);
      expect(resultCalls).toBe(asked + 1);
      expect(await recordedAsResetRun(stub, b2)).toBe(false);
      if (happened) {
        expect(await row(workflowId)).toMatchObject({ status: "running", temporal_run_id: c, credit_hold: HOLD });
        await stub.record(workflowId, [usage(c, 7), finished(c, "completed")]);
        expect(await row(workflowId)).toMatchObject({ status: "completed", temporal_run_id: c, credit_hold: 0 });
        expect(await charges(org.organizationId)).toHaveLength(1);
        expect(await orgRow(org.organizationId)).toMatchObject({ reserved: 0 });
      } else {
        // B2 went on (no reset happened) and completed: its end settles the run's own hold, all 18 tokens charged once.
        await expectOwnRunCharged(workflowId, b2, org.organizationId, 18);
      }
    });
  }
});
