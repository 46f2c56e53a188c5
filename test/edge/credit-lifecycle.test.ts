/**
 * A metered run's credits over its whole life, driven through the run's RunStream DO (its start,
 * then the host's event pushes), with every D1 statement counted at the binding the DO uses
 * (test/support/d1-intercept.ts, in place). Issue 13 asks for at most 5 D1 statements per `hello`
 * run; a metered run costs what an unmetered one does, because the credit triggers of migration
 * 0009 settle inside the run row's own statements.
 *
 * For each way a run can end here (completed, failed, cancelled, terminated, timed out, continued
 * as new then completed, reset after its end, the host refusing the first start, the outbox's
 * definite refusal) the test checks the charge, the ledger row, the released hold, and that
 * nothing is settled twice. The host is scripted (edge tests have none: HOST_URL is a closed
 * port): this file answers the DO's start requests to it.
 */

import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ACCEPTANCE_MARKER_PREFIX, type StartCommand } from "../../durable-objects/run-stream/run-starter.ts";
import { runStream } from "../../src/run-stream-client.ts";
import { codeRunCreditHold, prepareStart } from "../../src/services/runs.ts";
import { HOST_PATHS } from "../../src/shared/host-api.ts";
import type { RunEvent } from "../../src/shared/run-event-schema.ts";
import { runResetEvent } from "../../src/shared/run-events.ts";
import { interceptD1InPlace } from "../support/d1-intercept.ts";
import { llmUsageEvent, meteredOrg, orgRow, scriptHost, seedCatalog, seedOrganization } from "./helpers.ts";

const HOLD = Number(env.CODE_RUN_CREDIT_HOLD);

/** How the scripted host answers a start: a run id, a refusal (4xx), or no answer at all. */
type HostAnswer = { runId: string } | { refuse: string } | "unreachable";
let hostAnswer: (workflowId: string) => HostAnswer = () => "unreachable";
let restoreHost: () => void;

beforeAll(async () => {
  await seedCatalog();
  restoreHost = scriptHost(async (request, path) => {
    if (path !== HOST_PATHS.start) throw new TypeError("connection refused");
    const { workflowId } = (await request.json()) as { workflowId: string };
    const answer = hostAnswer(workflowId);
    if (answer === "unreachable") throw new TypeError("connection refused");
    if ("refuse" in answer) return Response.json({ error: { code: "workflow_not_found", message: answer.refuse } }, { status: 404 });
    return Response.json({ workflowId, runId: answer.runId });
  });
});
afterAll(() => restoreHost());
afterEach(() => {
  hostAnswer = () => "unreachable";
});

function command(organizationId: string): StartCommand {
  const runUuid = crypto.randomUUID();
  return {
    organizationId,
    workflowId: `hello-${runUuid}`,
    runUuid,
    target: { kind: "code", by: { name: "hello" }, input: { name: "Ada" } },
  };
}

/** Runs `fn` with every D1 statement of this isolate counted (the DO's included); nothing else may touch D1 meanwhile. */
async function counted<T>(fn: () => Promise<T>): Promise<{ result: T; count: { statements: number; batches: number } }> {
  const count = { statements: 0, batches: 0 };
  const undo = interceptD1InPlace(env.DB, (call) => {
    if (call.kind === "batch") {
      count.statements += call.statements;
      count.batches++;
    } else count.statements++;
  });
  try {
    return { result: await fn(), count };
  } finally {
    undo();
  }
}

let clock = Date.UTC(2026, 0, 1);
const at = () => new Date(++clock).toISOString();

/** What the host pushes for one step of `hello`: its start and its end, in two pushes. */
const stepEvents = (runId: string): RunEvent[][] => [
  [{ sourceKey: `step:${runId}:a:1:started`, type: "step", at: at(), data: { runId, activityId: "a", attempt: 1, state: "started" } }],
  [
    {
      sourceKey: `step:${runId}:a:1:completed`,
      type: "step",
      at: at(),
      data: { runId, activityId: "a", attempt: 1, state: "completed", outputs: { greeting: "Hello, Ada" } },
    },
  ],
];
const usage = (runId: string, tokens: number): RunEvent => llmUsageEvent(runId, tokens, at());
const finished = (runId: string, status: string, extra: Record<string, unknown> = {}): RunEvent =>
  ({
    sourceKey: `run:${runId}:finished`,
    type: "run.finished",
    at: at(),
    data: { runId, status, ...(status === "completed" ? { output: { greeting: "Hello, Ada" } } : { error: `run ${status}` }), ...extra },
  }) as RunEvent;

const runRow = (workflowId: string) =>
  env.DB.prepare("SELECT status, credit_hold, credits_charged FROM runs WHERE temporal_workflow_id = ?").bind(workflowId).first();
const charges = (organizationId: string) =>
  env.DB.prepare("SELECT kind, amount, balance_after, note FROM credit_ledger WHERE organization_id = ? AND kind = 'charge'")
    .bind(organizationId)
    .all()
    .then((r) => r.results);

/**
 * The organization's catalog entry in the isolate cache, as it is for every start but an
 * organization's first in an isolate (the bench's steady state): counts leave that read out.
 */
const warmCatalog = (c: StartCommand) => prepareStart(env, c.organizationId, c.target);

/**
 * A run's life through its DO: the start (the scripted host confirms it; the DO records
 * `run.started`), then each push in turn, as the host sends them.
 */
async function live(organizationId: string, pushes: (runId: string) => RunEvent[][]) {
  const c = command(organizationId);
  await warmCatalog(c);
  const runId = `r-${crypto.randomUUID().slice(0, 8)}`;
  hostAnswer = () => ({ runId });
  const stub = runStream(env, c.workflowId);
  const { result: started, count } = await counted(async () => {
    const reply = await stub.start(c);
    for (const events of pushes(runId)) await stub.record(c.workflowId, events);
    return reply;
  });
  expect(started).toMatchObject({ ok: true, started: { workflowId: c.workflowId, runId, status: "running" } });
  return { c, runId, count };
}

describe("a metered hello run, start to finish, counted at the DO's D1 binding", () => {
  it("costs 4 statements, as many as an unmetered one (issue 13: at most 5), and is settled by them", async () => {
    const org = await meteredOrg(HOLD * 2);
    const { c, count } = await live(org.organizationId, (runId) => [...stepEvents(runId), [finished(runId, "completed")]]);
    // the row with its hold; `running`; the step (start and end folded); the finish, which settles
    expect(count.statements).toBeLessThanOrEqual(5);
    expect(count).toEqual({ statements: 4, batches: 3 });
    expect(await runRow(c.workflowId)).toEqual({ status: "completed", credit_hold: 0, credits_charged: 0 });
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 2, reserved: 0 });
    expect(await charges(org.organizationId)).toEqual([{ kind: "charge", amount: 0, balance_after: HOLD * 2, note: "0 tokens" }]);

    const free = await seedOrganization();
    const unmetered = await live(free.organizationId, (runId) => [...stepEvents(runId), [finished(runId, "completed")]]);
    expect(unmetered.count).toEqual(count);
    expect(await runRow(unmetered.c.workflowId)).toEqual({ status: "completed", credit_hold: 0, credits_charged: null });
    expect(await orgRow(free.organizationId)).toEqual({ balance: null, reserved: 0 });
  });

  it("a completed run with usage is charged its tokens, once, however often its end is delivered again", async () => {
    const org = await meteredOrg(HOLD * 2);
    const { c, runId, count } = await live(org.organizationId, (runId) => [
      ...stepEvents(runId),
      [usage(runId, 42), finished(runId, "completed")],
    ]);
    expect(count.statements).toBeLessThanOrEqual(5);
    for (let i = 0; i < 2; i++) await runStream(env, c.workflowId).record(c.workflowId, [finished(runId, "completed")]);
    expect(await runRow(c.workflowId)).toEqual({ status: "completed", credit_hold: 0, credits_charged: 42 });
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 2 - 42, reserved: 0 });
    expect(await charges(org.organizationId)).toEqual([{ kind: "charge", amount: -42, balance_after: HOLD * 2 - 42, note: "42 tokens" }]);
  });

  it("a charge never exceeds the run's hold", async () => {
    const org = await meteredOrg(HOLD * 2);
    const { c } = await live(org.organizationId, (runId) => [[usage(runId, HOLD + 500), finished(runId, "completed")]]);
    expect(await runRow(c.workflowId)).toEqual({ status: "completed", credit_hold: 0, credits_charged: HOLD });
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD, reserved: 0 });
  });

  it("usage reported after a completed run's end is charged, each report once, never past the run's hold in all", async () => {
    const org = await meteredOrg(HOLD * 2);
    const { c, runId } = await live(org.organizationId, (runId) => [[usage(runId, 42), finished(runId, "completed")]]);
    expect(await runRow(c.workflowId)).toEqual({ status: "completed", credit_hold: 0, credits_charged: 42 });
    // The host's journal delivers a step's usage after the end was recorded (an outage between them), twice.
    const stub = runStream(env, c.workflowId);
    const late = { ...usage(runId, 100), sourceKey: `attribute:${runId}:a:1:2` };
    for (let i = 0; i < 2; i++) await stub.record(c.workflowId, [late]);
    expect(await runRow(c.workflowId)).toEqual({ status: "completed", credit_hold: 0, credits_charged: 142 });
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 2 - 142, reserved: 0 });
    // More than the hold has left: charged up to the hold, no further.
    await stub.record(c.workflowId, [{ ...usage(runId, HOLD), sourceKey: `attribute:${runId}:a:1:3` }]);
    await stub.record(c.workflowId, [{ ...usage(runId, 7), sourceKey: `attribute:${runId}:a:1:4` }]);
    expect(await runRow(c.workflowId)).toEqual({ status: "completed", credit_hold: 0, credits_charged: HOLD });
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD, reserved: 0 });
    expect(await charges(org.organizationId)).toEqual([
      { kind: "charge", amount: -42, balance_after: HOLD * 2 - 42, note: "42 tokens" },
      { kind: "charge", amount: -100, balance_after: HOLD * 2 - 142, note: "100 tokens reported after the run ended" },
      { kind: "charge", amount: -(HOLD - 142), balance_after: HOLD, note: `${HOLD - 142} tokens reported after the run ended` },
    ]);
  });

  it("usage moves the row's totals, not its updatedAt: that is the time of its last status change", async () => {
    const org = await meteredOrg(HOLD * 2);
    const updatedAt = async (workflowId: string) =>
      (await env.DB.prepare("SELECT updated_at AS at, tokens_total AS tokens FROM runs WHERE temporal_workflow_id = ?")
        .bind(workflowId)
        .first<{ at: string; tokens: number }>())!;
    const { c, runId } = await live(org.organizationId, () => []);
    const running = await updatedAt(c.workflowId);
    const stub = runStream(env, c.workflowId);
    await new Promise((r) => setTimeout(r, 5));
    await stub.record(c.workflowId, [usage(runId, 42)]);
    expect(await updatedAt(c.workflowId)).toEqual({ at: running.at, tokens: 42 });
    await stub.record(c.workflowId, [finished(runId, "completed")]);
    const completed = await updatedAt(c.workflowId);
    expect(completed.at > running.at).toBe(true);
    // Usage reported after the end (the host's journal, late) is charged and counted, and changes no status.
    await new Promise((r) => setTimeout(r, 5));
    await stub.record(c.workflowId, [{ ...usage(runId, 8), sourceKey: `attribute:${runId}:a:1:9` }]);
    expect(await updatedAt(c.workflowId)).toEqual({ at: completed.at, tokens: 50 });
  });

  it("usage reported after any other end, or for an unmetered organization, is counted and not charged", async () => {
    const metered = await meteredOrg(HOLD * 2);
    const failed = await live(metered.organizationId, (runId) => [[usage(runId, 42), finished(runId, "failed")]]);
    await runStream(env, failed.c.workflowId).record(failed.c.workflowId, [
      { ...usage(failed.runId, 50), sourceKey: `attribute:${failed.runId}:a:1:2` },
    ]);
    expect(await runRow(failed.c.workflowId)).toEqual({ status: "failed", credit_hold: 0, credits_charged: 0 });
    expect(await orgRow(metered.organizationId)).toEqual({ balance: HOLD * 2, reserved: 0 });
    expect(await charges(metered.organizationId)).toHaveLength(1);

    const unmetered = await seedOrganization();
    const free = await live(unmetered.organizationId, (runId) => [[usage(runId, 42), finished(runId, "completed")]]);
    await runStream(env, free.c.workflowId).record(free.c.workflowId, [
      { ...usage(free.runId, 50), sourceKey: `attribute:${free.runId}:a:1:2` },
    ]);
    const row = await env.DB.prepare("SELECT status, credits_charged, tokens_total FROM runs WHERE temporal_workflow_id = ?")
      .bind(free.c.workflowId)
      .first();
    expect(row).toEqual({ status: "completed", credits_charged: null, tokens_total: 92 });
    expect(await orgRow(unmetered.organizationId)).toEqual({ balance: null, reserved: 0 });
  });

  for (const status of ["failed", "cancelled", "terminated", "timed_out"]) {
    it(`a run that ends ${status} is charged nothing, its usage notwithstanding, and its hold is released`, async () => {
      const org = await meteredOrg(HOLD * 2);
      const { c, count } = await live(org.organizationId, (runId) => [...stepEvents(runId), [usage(runId, 42), finished(runId, status)]]);
      expect(count.statements).toBeLessThanOrEqual(5);
      expect(await runRow(c.workflowId)).toEqual({ status, credit_hold: 0, credits_charged: 0 });
      expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 2, reserved: 0 });
      expect(await charges(org.organizationId)).toEqual([
        { kind: "charge", amount: 0, balance_after: HOLD * 2, note: `run ${status}: not charged` },
      ]);
    });
  }

  it("a run that continues as new keeps its hold until the last run ends, and is settled once then", async () => {
    const org = await meteredOrg(HOLD * 2);
    const next = `r-next-${crypto.randomUUID().slice(0, 8)}`;
    const { c } = await live(org.organizationId, (runId) => [[usage(runId, 10), finished(runId, "continued_as_new", { newRunId: next })]]);
    expect(await runRow(c.workflowId)).toEqual({ status: "running", credit_hold: HOLD, credits_charged: null });
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 2, reserved: HOLD });
    await runStream(env, c.workflowId).record(c.workflowId, [usage(next, 5), finished(next, "completed")]);
    expect(await runRow(c.workflowId)).toEqual({ status: "completed", credit_hold: 0, credits_charged: 15 });
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 2 - 15, reserved: 0 });
    expect(await charges(org.organizationId)).toHaveLength(1);
  });

  it("a run reset after its end is open again, and its second end settles nothing more", async () => {
    const org = await meteredOrg(HOLD * 2);
    const { c, runId } = await live(org.organizationId, (runId) => [[usage(runId, 10), finished(runId, "completed")]]);
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 2 - 10, reserved: 0 });
    const reset = `r-reset-${crypto.randomUUID().slice(0, 8)}`;
    const stub = runStream(env, c.workflowId);
    await stub.record(c.workflowId, [runResetEvent(reset, runId, at())]);
    expect(await runRow(c.workflowId)).toEqual({ status: "running", credit_hold: 0, credits_charged: 10 });
    await stub.record(c.workflowId, [finished(reset, "failed")]);
    expect(await runRow(c.workflowId)).toEqual({ status: "failed", credit_hold: 0, credits_charged: 10 });
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 2 - 10, reserved: 0 });
    expect(await charges(org.organizationId)).toHaveLength(1);
  });
});

describe("a projection whose answer is lost after D1 committed it", () => {
  it("adds the run's usage to its totals once: the retry reads what D1 already has, and the run is charged 30 tokens, not 40", async () => {
    const org = await meteredOrg(HOLD * 2);
    const { c, runId } = await live(org.organizationId, () => []);
    const stub = runStream(env, c.workflowId);
    // D1 commits the next batch, then the answer is lost (a network error after the commit).
    const binding = env.DB as unknown as { batch: D1Database["batch"] };
    const commit = binding.batch;
    let loseNext = true;
    binding.batch = async <T>(statements: D1PreparedStatement[]) => {
      const results = await commit.call<D1Database, [D1PreparedStatement[]], Promise<D1Result<T>[]>>(env.DB, statements);
      if (loseNext) {
        loseNext = false;
        throw new Error("D1_ERROR: Network connection lost.");
      }
      return results;
    };
    try {
      await stub.record(c.workflowId, [usage(runId, 10)]).catch(() => undefined);
      expect(loseNext).toBe(false);
      // The watchdog, or the run's next event, projects what the log still has pending.
      await stub.record(c.workflowId, [{ ...usage(runId, 20), sourceKey: `attribute:${runId}:a:1:2` }, finished(runId, "completed")]);
    } finally {
      delete (binding as { batch?: unknown }).batch;
    }
    const row = await env.DB.prepare("SELECT tokens_total, credits_charged, status FROM runs WHERE temporal_workflow_id = ?")
      .bind(c.workflowId)
      .first();
    expect(row).toEqual({ tokens_total: 30, credits_charged: 30, status: "completed" });
    expect(await charges(org.organizationId)).toEqual([{ kind: "charge", amount: -30, balance_after: HOLD * 2 - 30, note: "30 tokens" }]);
  });
});

describe("a metered start that never runs", () => {
  it("the host refuses the first attempt: the row and its hold are undone in one statement, and the caller gets the error", async () => {
    const org = await meteredOrg(HOLD * 2);
    const c = command(org.organizationId);
    await warmCatalog(c);
    hostAnswer = () => ({ refuse: "no such workflow on the host" });
    const { result, count } = await counted(async () => {
      const reply = await runStream(env, c.workflowId).start(c);
      return reply;
    });
    expect(result).toMatchObject({ ok: false, error: { code: "workflow_not_found" } });
    expect(count).toEqual({ statements: 2, batches: 0 }); // the row with its hold; its removal, which gives the hold back
    expect(await runRow(c.workflowId)).toBeNull();
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 2, reserved: 0 });
    expect(await charges(org.organizationId)).toEqual([]);
    // Nothing is left in the DO either: no outbox row, no acceptance marker (run-starter.ts).
    const left = await runInDurableObject(runStream(env, c.workflowId), (_i, state) => ({
      outbox: state.storage.sql.exec("SELECT accept_id FROM run_start").toArray(),
      markers: [...state.storage.kv.list({ prefix: ACCEPTANCE_MARKER_PREFIX })],
    }));
    expect(left).toEqual({ outbox: [], markers: [] });
  });

  it("accepted, then refused for good by the outbox: the row ends failed, charged nothing, its hold released once", async () => {
    const org = await meteredOrg(HOLD * 2);
    const c = command(org.organizationId);
    const stub = runStream(env, c.workflowId);
    expect(await stub.start(c)).toMatchObject({ ok: true, started: { runId: null, status: "scheduled" } });
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 2, reserved: HOLD });
    hostAnswer = () => ({ refuse: "the workflow left the host's catalog" });
    await runInDurableObject(stub, (_i, state) => state.storage.sql.exec("UPDATE run_start SET next_attempt_at = 0"));
    const { count } = await counted(() => runDurableObjectAlarm(stub));
    expect(count).toEqual({ statements: 1, batches: 0 }); // the `failed` row, which settles
    expect(await runRow(c.workflowId)).toEqual({ status: "failed", credit_hold: 0, credits_charged: 0 });
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 2, reserved: 0 });
    expect(await charges(org.organizationId)).toEqual([
      { kind: "charge", amount: 0, balance_after: HOLD * 2, note: "run failed: not charged" },
    ]);
    // A later alarm finds nothing pending and settles nothing again.
    await runInDurableObject(stub, (_i, state) => state.storage.setAlarm(Date.now()));
    await runDurableObjectAlarm(stub);
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 2, reserved: 0 });
    expect(await charges(org.organizationId)).toHaveLength(1);
  });
});

describe("a refusal for good that D1 cannot record at once", () => {
  it("the start stays pending and the next alarm records it: the row ends failed, its hold released, never scheduled for ever", async () => {
    const org = await meteredOrg(HOLD * 2);
    const c = command(org.organizationId);
    const stub = runStream(env, c.workflowId);
    await stub.start(c);
    hostAnswer = () => ({ refuse: "the workflow left the host's catalog" });
    const due = () => runInDurableObject(stub, (_i, state) => state.storage.sql.exec("UPDATE run_start SET next_attempt_at = 0"));
    await due();
    // D1 refuses the alarm's one statement (the `failed` row).
    let failing = 1;
    const undo = interceptD1InPlace(env.DB, () => (failing-- > 0 ? Promise.reject(new Error("D1 is unreachable")) : undefined));
    try {
      await runDurableObjectAlarm(stub).catch(() => undefined);
    } finally {
      undo();
    }
    expect(failing).toBe(0); // the one statement was refused
    await due();
    await runDurableObjectAlarm(stub);
    expect(await runRow(c.workflowId)).toEqual({ status: "failed", credit_hold: 0, credits_charged: 0 });
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 2, reserved: 0 });
    expect(await runInDurableObject(stub, (_i, state) => state.storage.sql.exec("SELECT state FROM run_start").toArray())).toEqual([
      { state: "failed" },
    ]);
  });
});

describe("concurrent metered starts through the runs' DOs", () => {
  it("12 starts against a balance for 3 hold exactly 3; the other 9 are 402 and leave no row; the 3 ends release all", async () => {
    const org = await meteredOrg(HOLD * 3 + HOLD / 2);
    const commands = Array.from({ length: 12 }, () => command(org.organizationId));
    hostAnswer = (workflowId) => ({ runId: `r-${workflowId.slice(-8)}` });
    const replies = await Promise.all(commands.map((c) => runStream(env, c.workflowId).start(c)));
    const accepted = commands.filter((_c, i) => replies[i]!.ok);
    expect(accepted).toHaveLength(3);
    for (const reply of replies.filter((r) => !r.ok)) expect(reply).toMatchObject({ ok: false, error: { code: "insufficient_credits" } });
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 3 + HOLD / 2, reserved: HOLD * 3 });
    const rows = await env.DB.prepare("SELECT COUNT(*) AS n, SUM(credit_hold) AS held FROM runs WHERE organization_id = ?")
      .bind(org.organizationId)
      .first();
    expect(rows).toEqual({ n: 3, held: HOLD * 3 });
    await Promise.all(
      accepted.map((c) => runStream(env, c.workflowId).record(c.workflowId, [finished(`r-${c.workflowId.slice(-8)}`, "completed")])),
    );
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 3 + HOLD / 2, reserved: 0 });
    expect(await charges(org.organizationId)).toHaveLength(3);
  });
});

describe("CODE_RUN_CREDIT_HOLD", () => {
  it("is a whole number of credits, at least 1: a negative, zero, fractional-below-1 or unreadable value is the default", () => {
    const holdWith = (value: string | undefined) => codeRunCreditHold({ ...env, CODE_RUN_CREDIT_HOLD: value } as Env);
    expect(holdWith("5000")).toBe(5000);
    expect(holdWith("2500.7")).toBe(2500);
    // A negative hold passed every credit check and was never charged (the triggers act on holds above 0).
    for (const bad of ["-5", "0", "0.5", "lots", "", undefined]) expect(holdWith(bad), String(bad)).toBe(20_000);
  });
});
