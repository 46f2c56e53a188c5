/**
 * What a run costs D1 (issue 13: at most 5 statements per `hello` run), checked against a D1
 * binding wrapped to count statements: the start (catalog from the isolate cache; the credit
 * check, hold and row in one statement) and the projection (a start folded into its finish; the
 * settlement done by the finish's own UPDATE through the credit triggers of migration 0009).
 * Also the SQL's refusals: too few credits (with the available figure), concurrent starts, a
 * taken workflow id; none leaves a row or a hold behind. A metered run's whole life, counted at
 * the binding the run's DO uses, and its settlement for every way it can end: credit-lifecycle.test.ts.
 */

import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { PROJECTION_STATE, UNPROJECTED_KEPT_MAX_CHARS } from "../../durable-objects/run-stream/constants.ts";
import { EventLog } from "../../durable-objects/run-stream/event-log.ts";
import { Meta } from "../../durable-objects/run-stream/meta.ts";
import {
  D1Projection,
  MAX_ROWS_PER_BATCH,
  PROJECTION_BATCH_MAX_CHARS,
  STEP_START_GRACE_MS,
} from "../../durable-objects/run-stream/projection.ts";
import { RunStarter, type StartCommand } from "../../durable-objects/run-stream/run-starter.ts";
import { createSchema } from "../../durable-objects/run-stream/storage.ts";
import { WaitingDetector } from "../../durable-objects/run-stream/waiting.ts";
import { catalogEntries } from "../../host/catalog.ts";
import { isUniqueViolation } from "../../src/db/client.ts";
import { type AcceptedRunRow, acceptRunWithHold } from "../../src/db/credits.ts";
import { upsertCodeCatalog } from "../../src/db/workflows.ts";
import { runStream } from "../../src/run-stream-client.ts";
import { prepareStart } from "../../src/services/runs.ts";
import type { RunEvent } from "../../src/shared/run-event-schema.ts";
import { interceptD1 } from "../support/d1-intercept.ts";
import { admin, llmUsageEvent, meteredOrg, orgRow, seedCatalog, seedOrganization } from "./helpers.ts";

/** The DO's `meta` table as the DO hydrates it. */
const metaOf = (sql: SqlStorage) =>
  new Meta(
    sql,
    sql
      .exec<{ key: string; value: string }>("SELECT key, value FROM meta")
      .toArray()
      .map((r) => [r.key, r.value] as const),
  );

const HOLD = Number(env.CODE_RUN_CREDIT_HOLD);

/** A D1 binding that counts the statements it executes (alone or in a batch) and its batches. */
function countingD1(db: D1Database) {
  const count = { statements: 0, batches: 0 };
  const d1 = interceptD1(db, (call) => {
    if (call.kind === "batch") {
      count.statements += call.statements;
      count.batches++;
    } else count.statements++;
  });
  return { d1, count };
}

const runRow = (workflowId: string) =>
  env.DB.prepare(
    "SELECT status, temporal_run_id, started_at, credit_hold, credits_charged, tokens_total FROM runs WHERE temporal_workflow_id = ?",
  )
    .bind(workflowId)
    .first();

function command(organizationId: string, input: unknown = { name: "Ada" }): StartCommand {
  const runUuid = crypto.randomUUID();
  return { organizationId, workflowId: `hello-${runUuid}`, runUuid, target: { kind: "code", by: { name: "hello" }, input } };
}

/** Starts a run through a RunStarter in the run's own DO whose D1 binding counts (edge tests have no host: the start stays accepted). */
async function countedStart(c: StartCommand) {
  const { d1, count } = countingD1(env.DB);
  const reply = await runInDurableObject(runStream(env, c.workflowId), (_instance, state) => {
    // A new DO makes its schema on first use (the DO's own start path does this through its storage getter).
    createSchema(state.storage.sql);
    return new RunStarter({
      sql: state.storage.sql,
      hasSchema: () => true,
      env: { ...env, DB: d1 },
      storage: state.storage,
      prepare: prepareStart,
      isSettledStartIn: async () => true,
      recordStarted: async () => undefined,
      noteNeverStarted: () => undefined,
    }).start(c);
  });
  return { reply, count };
}

let helloId: string;
beforeAll(async () => {
  await seedCatalog();
  helloId = (await env.DB.prepare("SELECT id FROM workflows WHERE name = 'hello' AND organization_id IS NULL").first<{ id: string }>())!.id;
});

describe("the start's D1 statements", () => {
  it("an unmetered organization's start is one statement once the isolate has seen the catalog entry and the organization", async () => {
    const org = await seedOrganization();
    await countedStart(command(org.organizationId)); // warms the catalog entry and the metering hint
    const c = command(org.organizationId);
    const { reply, count } = await countedStart(c);
    expect(reply).toMatchObject({ ok: true, started: { workflowId: c.workflowId, status: "scheduled" } });
    expect(count).toEqual({ statements: 1, batches: 0 });
    expect(await runRow(c.workflowId)).toMatchObject({ status: "scheduled", credit_hold: 0 });
    expect(await orgRow(org.organizationId)).toEqual({ balance: null, reserved: 0 });
  });

  it("a metered organization's start is one statement too: the row with its hold (a trigger adds the hold to the organization's reserve)", async () => {
    const org = await meteredOrg(HOLD * 3);
    await countedStart(command(org.organizationId)); // warms the organization's catalog entry
    const c = command(org.organizationId);
    const { reply, count } = await countedStart(c);
    expect(reply).toMatchObject({ ok: true });
    expect(count).toEqual({ statements: 1, batches: 0 });
    expect(await runRow(c.workflowId)).toMatchObject({ status: "scheduled", credit_hold: HOLD });
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 3, reserved: HOLD * 2 });
  });

  it("too few credits: 402 with the available figure (the balance is read only then), no row, no hold", async () => {
    const org = await meteredOrg(HOLD + 5);
    expect((await countedStart(command(org.organizationId))).reply).toMatchObject({ ok: true });
    const c = command(org.organizationId);
    const { reply, count } = await countedStart(c);
    expect(reply).toEqual({
      ok: false,
      error: {
        code: "insufficient_credits",
        message: `this run needs ${HOLD} credits available and the organization has 5; add credits to continue`,
      },
    });
    expect(count).toEqual({ statements: 2, batches: 0 }); // the refused INSERT, then the balance for the message
    expect(await runRow(c.workflowId)).toBeNull();
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD + 5, reserved: HOLD });
  });

  it("metering turned on after an unmetered start in this isolate: the next start holds, still in one statement", async () => {
    const org = await seedOrganization();
    await countedStart(command(org.organizationId));
    await admin("POST", `/admin/v1/organizations/${org.organizationId}/credits`, { amount: HOLD * 2, note: "test" });
    const c = command(org.organizationId);
    const { reply, count } = await countedStart(c);
    expect(reply).toMatchObject({ ok: true });
    expect(count).toEqual({ statements: 1, batches: 0 });
    expect(await runRow(c.workflowId)).toMatchObject({ credit_hold: HOLD });
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 2, reserved: HOLD });
  });
});

describe("the catalog entry from the isolate cache", () => {
  it("is read from D1 once, and a catalog publish in this isolate applies to the next start at once", async () => {
    const org = await seedOrganization();
    await countedStart(command(org.organizationId));
    // hello's input now has to be a number: the next start is checked against it, not the cached entry.
    const changed = catalogEntries().map((e) =>
      e.name === "hello" ? { ...e, inputSchema: { type: "object", properties: { name: { type: "number" } }, required: ["name"] } } : e,
    );
    await upsertCodeCatalog(env.DB, changed);
    try {
      const { reply, count } = await countedStart(command(org.organizationId));
      expect(reply).toMatchObject({ ok: false, error: { code: "invalid_input" } });
      expect(count).toEqual({ statements: 1, batches: 0 }); // the fresh catalog read; nothing written
      const again = await countedStart(command(org.organizationId, { name: 7 }));
      expect(again.reply).toMatchObject({ ok: true });
      expect(again.count).toEqual({ statements: 1, batches: 0 }); // the row only: the entry is cached again
    } finally {
      await seedCatalog();
    }
  });
});

describe("acceptRunWithHold: the SQL", () => {
  /** An open-run limit no test here reaches unless it means to. */
  const OPEN = 1_000;
  const row = (organizationId: string, temporalWorkflowId = `hello-${crypto.randomUUID()}`): AcceptedRunRow => ({
    id: crypto.randomUUID(),
    organizationId,
    workflowId: helloId,
    workflowName: "hello",
    temporalWorkflowId,
    input: { name: "Ada" },
    envNames: null,
  });

  it("concurrent starts never hold more than the balance, and every refused start wrote nothing", async () => {
    const org = await meteredOrg(1000);
    const rows = Array.from({ length: 12 }, () => row(org.organizationId));
    const outcomes = await Promise.all(rows.map((r) => acceptRunWithHold(env.DB, r, 300, OPEN)));
    expect(outcomes.filter((o) => o.ok)).toHaveLength(3);
    for (const o of outcomes.filter((o) => !o.ok)) expect(o).toEqual({ ok: false, reason: "credits", available: 100 });
    expect(await orgRow(org.organizationId)).toEqual({ balance: 1000, reserved: 900 });
    const inserted = await env.DB.prepare("SELECT COUNT(*) AS n, SUM(credit_hold) AS held FROM runs WHERE organization_id = ?")
      .bind(org.organizationId)
      .first();
    expect(inserted).toEqual({ n: 3, held: 900 });
  });

  it("a workflow id already taken throws D1's UNIQUE error and holds nothing", async () => {
    const org = await meteredOrg(1000);
    const first = row(org.organizationId);
    expect(await acceptRunWithHold(env.DB, first, 300, OPEN)).toEqual({ ok: true, creditHold: 300 });
    const again = { ...row(org.organizationId), temporalWorkflowId: first.temporalWorkflowId };
    const err = await acceptRunWithHold(env.DB, again, 300, OPEN).catch((e: unknown) => e);
    expect(isUniqueViolation(err)).toBe(true);
    expect(await orgRow(org.organizationId)).toEqual({ balance: 1000, reserved: 300 });
  });

  it("an unmetered organization holds nothing and is never refused for credits", async () => {
    const org = await seedOrganization();
    expect(await acceptRunWithHold(env.DB, row(org.organizationId), 10_000_000, OPEN)).toEqual({ ok: true, creditHold: 0 });
    expect(await orgRow(org.organizationId)).toEqual({ balance: null, reserved: 0 });
  });

  it("security: at most maxOpenRuns runs that have not ended, even when started at once; ended runs free their place", async () => {
    const org = await seedOrganization();
    const rows = Array.from({ length: 8 }, () => row(org.organizationId));
    const outcomes = await Promise.all(rows.map((r) => acceptRunWithHold(env.DB, r, 0, 5)));
    expect(outcomes.filter((o) => o.ok)).toHaveLength(5);
    for (const o of outcomes.filter((o) => !o.ok)) expect(o).toEqual({ ok: false, reason: "open_runs", limit: 5 });
    const count = () =>
      env.DB.prepare("SELECT COUNT(*) AS n FROM runs WHERE organization_id = ?").bind(org.organizationId).first<{ n: number }>();
    expect((await count())!.n).toBe(5);
    // Running counts as open; an ended run does not.
    const accepted = rows.filter((_r, i) => outcomes[i]!.ok);
    await env.DB.prepare("UPDATE runs SET status = 'running' WHERE id = ?").bind(accepted[0]!.id).run();
    expect(await acceptRunWithHold(env.DB, row(org.organizationId), 0, 5)).toMatchObject({ ok: false, reason: "open_runs" });
    await env.DB.prepare("UPDATE runs SET status = 'completed' WHERE id = ?").bind(accepted[1]!.id).run();
    expect(await acceptRunWithHold(env.DB, row(org.organizationId), 0, 5)).toEqual({ ok: true, creditHold: 0 });
    expect((await count())!.n).toBe(6);
    // Another organization has places of its own.
    expect(await acceptRunWithHold(env.DB, row((await seedOrganization()).organizationId), 0, 5)).toEqual({ ok: true, creditHold: 0 });
  });

  it("a refusal whose reason is gone by the time it is read (a run ended in between) is tried again, not reported as too few credits", async () => {
    const org = await meteredOrg(1000);
    expect(await acceptRunWithHold(env.DB, row(org.organizationId), 100, 1)).toEqual({ ok: true, creditHold: 100 });
    // The next start is refused (1 open); before its refusal is read, that run ends.
    let calls = 0;
    const db = interceptD1(env.DB, (call) => {
      calls++;
      if (calls === 2 && call.kind === "statement")
        return env.DB.prepare("UPDATE runs SET status = 'completed' WHERE organization_id = ?")
          .bind(org.organizationId)
          .run()
          .then(() => undefined);
    });
    expect(await acceptRunWithHold(db, row(org.organizationId), 100, 1)).toEqual({ ok: true, creditHold: 100 });
    expect(calls).toBe(3);
  });

  it("a metered organization at its open-run limit is told so, not that it lacks credits", async () => {
    const org = await meteredOrg(1000);
    expect(await acceptRunWithHold(env.DB, row(org.organizationId), 100, 1)).toEqual({ ok: true, creditHold: 100 });
    expect(await acceptRunWithHold(env.DB, row(org.organizationId), 100, 1)).toEqual({ ok: false, reason: "open_runs", limit: 1 });
    expect(await orgRow(org.organizationId)).toEqual({ balance: 1000, reserved: 100 });
  });
});

describe("the projection's D1 statements", () => {
  const at = (ms: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, 0, ms)).toISOString();
  const lifetime = (runId: string, tokens: number): RunEvent[] => [
    { sourceKey: `run:${runId}:started`, type: "run.started", at: at(1), data: { runId } },
    { sourceKey: `step:${runId}:a:1:started`, type: "step", at: at(2), data: { runId, activityId: "a", attempt: 1, state: "started" } },
    {
      sourceKey: `step:${runId}:a:1:completed`,
      type: "step",
      at: at(3),
      data: { runId, activityId: "a", attempt: 1, state: "completed", outputs: { ok: true } },
    },
    llmUsageEvent(runId, tokens, at(4)),
    { sourceKey: `run:${runId}:finished`, type: "run.finished", at: at(5), data: { runId, status: "completed", output: { ok: true } } },
  ];

  /** Appends a run's whole life to its DO's log and projects it with a counting D1 binding. */
  async function project(workflowId: string, events: RunEvent[]) {
    const { d1, count } = countingD1(env.DB);
    await runInDurableObject(runStream(env, workflowId), async (_instance, state) => {
      const log = new EventLog(state.storage.sql);
      // Made before the events arrive, as the DO's parts are when it opens (one made after would
      // find attributes pending that a previous instance may have sent, and read D1 first).
      const projection = new D1Projection(d1, log, new WaitingDetector(log, metaOf(state.storage.sql)));
      log.append(events);
      await projection.apply(workflowId, false);
    });
    return count;
  }

  it("a run that starts and ends in one application: one batch; the start folded into the finish; the settlement in the finish's UPDATE", async () => {
    const org = await meteredOrg(HOLD * 2);
    const c = command(org.organizationId);
    expect((await runStream(env, c.workflowId).start(c)).ok).toBe(true);
    const count = await project(c.workflowId, lifetime("r-fold", 42));
    // step upsert, usage totals, the final UPDATE (no separate `running` UPDATE; the charge, ledger row and release are its trigger's)
    expect(count).toEqual({ statements: 3, batches: 1 });
    expect(await runRow(c.workflowId)).toEqual({
      status: "completed",
      temporal_run_id: "r-fold",
      started_at: at(1),
      credit_hold: 0,
      credits_charged: 42,
      tokens_total: 42,
    });
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 2 - 42, reserved: 0 });
    const ledger = await env.DB.prepare(
      "SELECT kind, amount, balance_after, note FROM credit_ledger WHERE organization_id = ? AND run_id IS NOT NULL",
    )
      .bind(org.organizationId)
      .all();
    expect(ledger.results).toEqual([{ kind: "charge", amount: -42, balance_after: HOLD * 2 - 42, note: "42 tokens" }]);
  });

  it("a failed run settled by its finishing batch is charged nothing and its hold is released", async () => {
    const org = await meteredOrg(HOLD * 2);
    const c = command(org.organizationId);
    expect((await runStream(env, c.workflowId).start(c)).ok).toBe(true);
    const events = lifetime("r-failed", 42).map((e) =>
      e.type === "run.finished" ? ({ ...e, data: { runId: "r-failed", status: "failed", error: "boom" } } as RunEvent) : e,
    );
    expect(await project(c.workflowId, events)).toEqual({ statements: 3, batches: 1 });
    expect(await runRow(c.workflowId)).toMatchObject({ status: "failed", credit_hold: 0, credits_charged: 0 });
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 2, reserved: 0 });
    const ledger = await env.DB.prepare("SELECT amount, note FROM credit_ledger WHERE organization_id = ? AND run_id IS NOT NULL")
      .bind(org.organizationId)
      .all();
    expect(ledger.results).toEqual([{ amount: 0, note: "run failed: not charged" }]);
  });

  it("an unmetered run's whole life is three statements too: step, totals, finish", async () => {
    const org = await seedOrganization();
    const c = command(org.organizationId);
    expect((await runStream(env, c.workflowId).start(c)).ok).toBe(true);
    expect(await project(c.workflowId, lifetime("r-free", 7))).toEqual({ statements: 3, batches: 1 });
    expect(await runRow(c.workflowId)).toMatchObject({ status: "completed", credit_hold: 0, credits_charged: null, started_at: at(1) });
  });

  it("a finish the code before the credit triggers left 'settlement pending' is settled by one idempotent statement", async () => {
    const org = await meteredOrg(HOLD * 2);
    const c = command(org.organizationId);
    expect((await runStream(env, c.workflowId).start(c)).ok).toBe(true);
    // What that code left behind: the final status written while the row still held its credits
    // (the trigger set aside for that one UPDATE, in one transaction).
    const trigger = await env.DB.prepare(
      "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'runs_credit_settle_on_final'",
    ).first<{
      sql: string;
    }>();
    await env.DB.batch([
      env.DB.prepare("DROP TRIGGER runs_credit_settle_on_final"),
      env.DB.prepare("UPDATE runs SET status = 'completed', tokens_total = 42 WHERE temporal_workflow_id = ?").bind(c.workflowId),
      env.DB.prepare(trigger!.sql),
    ]);
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 2, reserved: HOLD });
    const { d1, count } = countingD1(env.DB);
    await runInDurableObject(runStream(env, c.workflowId), async (_instance, state) => {
      const log = new EventLog(state.storage.sql);
      const [finished] = log.append([lifetime("r-legacy", 42).at(-1)!]);
      log.markProjected([finished!.seq], PROJECTION_STATE.settlementPending);
      const projection = new D1Projection(d1, log, new WaitingDetector(log, metaOf(state.storage.sql)));
      await projection.apply(c.workflowId, false);
      expect(log.hasUnprojected()).toBe(false);
      await projection.apply(c.workflowId, false); // nothing left: no statement
    });
    expect(count).toEqual({ statements: 1, batches: 1 });
    expect(await runRow(c.workflowId)).toMatchObject({ status: "completed", credit_hold: 0, credits_charged: 42 });
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 2 - 42, reserved: 0 });
  });

  it("a step's start waits briefly for its end (one upsert for both), and reaches D1 on its own if the end is late", async () => {
    const org = await seedOrganization();
    const c = command(org.organizationId);
    expect((await runStream(env, c.workflowId).start(c)).ok).toBe(true);
    const [started, stepStart, stepEnd] = lifetime("r-step", 1);
    const stepRows = () =>
      env.DB.prepare("SELECT s.step_id, s.status FROM step_runs s JOIN runs r ON r.id = s.run_id WHERE r.temporal_workflow_id = ?")
        .bind(c.workflowId)
        .all()
        .then((r) => r.results);
    const { d1, count } = countingD1(env.DB);
    await runInDurableObject(runStream(env, c.workflowId), async (_instance, state) => {
      const log = new EventLog(state.storage.sql);
      const projection = new D1Projection(d1, log, new WaitingDetector(log, metaOf(state.storage.sql)));
      log.append([started!, stepStart!]);
      await projection.apply(c.workflowId, false);
      // The run's start went out; the step's start is held back.
      expect(count).toEqual({ statements: 1, batches: 1 });
      log.append([stepEnd!]);
      await projection.apply(c.workflowId, false);
      expect(count).toEqual({ statements: 2, batches: 2 });
    });
    expect(await stepRows()).toEqual([{ step_id: "a", status: "completed" }]);

    // Another attempt whose end does not come: its row is written once the grace has passed.
    const late: RunEvent = {
      ...stepStart!,
      sourceKey: "step:r-step:a:2:started",
      data: { ...(stepStart!.data as object), attempt: 2 },
    } as RunEvent;
    await runInDurableObject(runStream(env, c.workflowId), async (_instance, state) => {
      const log = new EventLog(state.storage.sql);
      const projection = new D1Projection(env.DB, log, new WaitingDetector(log, metaOf(state.storage.sql)));
      log.append([late]);
      await projection.apply(c.workflowId, false);
      expect(await stepRows()).toHaveLength(1);
      await new Promise((r) => setTimeout(r, STEP_START_GRACE_MS * 3));
    });
    expect(await stepRows()).toEqual([
      { step_id: "a", status: "completed" },
      { step_id: "a", status: "running" },
    ]);
  });

  it("a backlog of many step attempts (a long D1 outage, a wide fan-out) goes to D1 in bounded batches, in log order, the finish last", async () => {
    const org = await meteredOrg(HOLD * 2);
    const c = command(org.organizationId);
    expect((await runStream(env, c.workflowId).start(c)).ok).toBe(true);
    const runId = "r-wide";
    const steps = MAX_ROWS_PER_BATCH * 2 + 50;
    const events: RunEvent[] = [{ sourceKey: `run:${runId}:started`, type: "run.started", at: at(1), data: { runId } }];
    for (let i = 0; i < steps; i++) {
      const step = { runId, activityId: `s${i}`, attempt: 1 };
      events.push(
        { sourceKey: `step:${runId}:s${i}:1:started`, type: "step", at: at(2), data: { ...step, state: "started" } },
        { sourceKey: `step:${runId}:s${i}:1:completed`, type: "step", at: at(3), data: { ...step, state: "completed", outputs: i } },
      );
    }
    events.push(llmUsageEvent(runId, 42, at(4)), {
      sourceKey: `run:${runId}:finished`,
      type: "run.finished",
      at: at(5),
      data: { runId, status: "completed", output: { ok: true } },
    });
    /** The statements of each batch the projection sent. */
    const batches: number[] = [];
    const d1 = interceptD1(env.DB, (call) => {
      if (call.kind === "batch") batches.push(call.statements);
    });
    await runInDurableObject(runStream(env, c.workflowId), async (_instance, state) => {
      const log = new EventLog(state.storage.sql);
      const projection = new D1Projection(d1, log, new WaitingDetector(log, metaOf(state.storage.sql)));
      log.append(events);
      await projection.apply(c.workflowId, false);
      expect(log.hasUnprojected()).toBe(false);
    });
    // D1 caps a batch's statements by what one invocation may send; a batch past it failed on every retry.
    expect(batches.length).toBeGreaterThan(1);
    for (const size of batches) expect(size).toBeLessThanOrEqual(MAX_ROWS_PER_BATCH + 2);
    const stepCount = await env.DB.prepare(
      "SELECT COUNT(*) AS n FROM step_runs s JOIN runs r ON r.id = s.run_id WHERE r.temporal_workflow_id = ? AND s.status = 'completed'",
    )
      .bind(c.workflowId)
      .first("n");
    expect(stepCount).toBe(steps);
    expect(await runRow(c.workflowId)).toMatchObject({ status: "completed", credit_hold: 0, credits_charged: 42, tokens_total: 42 });
    expect(await orgRow(org.organizationId)).toEqual({ balance: HOLD * 2 - 42, reserved: 0 });
  });
  /** A completed step attempt of `runId` whose outputs are `chars` characters (a fan-out's large outputs). */
  const bigStep = (runId: string, i: number, chars: number): RunEvent => ({
    sourceKey: `step:${runId}:s${i}:1:completed`,
    type: "step",
    at: at(3),
    data: { runId, activityId: `s${i}`, attempt: 1, state: "completed", outputs: "x".repeat(chars) },
  });

  /**
   * A wide run's life during a D1 outage: the run's start, six steps of UNPROJECTED_KEPT_MAX_CHARS / 4
   * each (12 Mi characters in all) around one larger than PROJECTION_BATCH_MAX_CHARS, its usage and
   * its finish, appended in three pushes, each projected as the DO does (D1 refusing).
   * `afterPush` looks at the log after each. Returns the characters of each row's JSON, by seq.
   */
  async function outageBacklog(workflowId: string, runId: string, afterPush: (log: EventLog) => void = () => undefined) {
    const quarter = Math.floor(UNPROJECTED_KEPT_MAX_CHARS / 4);
    const events: RunEvent[] = [
      { sourceKey: `run:${runId}:started`, type: "run.started", at: at(1), data: { runId } },
      ...[0, 1, 2].map((i) => bigStep(runId, i, quarter)),
      bigStep(runId, 3, PROJECTION_BATCH_MAX_CHARS + 1),
      ...[4, 5, 6].map((i) => bigStep(runId, i, quarter)),
      llmUsageEvent(runId, 42, at(4)),
      { sourceKey: `run:${runId}:finished`, type: "run.finished", at: at(5), data: { runId, status: "completed", output: { ok: true } } },
    ];
    const down = interceptD1(env.DB, (call) => (call.kind === "batch" ? Promise.reject(new Error("D1 is unreachable")) : undefined));
    const chars = new Map<number, number>();
    await runInDurableObject(runStream(env, workflowId), async (_instance, state) => {
      const log = new EventLog(state.storage.sql);
      const projection = new D1Projection(down, log, new WaitingDetector(log, metaOf(state.storage.sql)));
      for (const push of [events.slice(0, 4), events.slice(4, 8), events.slice(8)]) {
        for (const [i, row] of log.append(push).entries()) chars.set(row.seq, JSON.stringify(push[i]!.data).length);
        await expect(projection.apply(workflowId, false)).rejects.toThrow("D1 is unreachable");
        afterPush(log);
      }
    });
    return chars;
  }

  it("a long D1 outage under a wide run: the log keeps at most UNPROJECTED_KEPT_MAX_CHARS of its pending rows whole, and none after a wake", async () => {
    const org = await seedOrganization();
    const c = command(org.organizationId);
    expect((await runStream(env, c.workflowId).start(c)).ok).toBe(true);
    let most = 0;
    const chars = await outageBacklog(c.workflowId, "r-outage", (log) => {
      most = Math.max(most, log.keptUnprojectedChars());
    });
    // The backlog is past the budget (each push's rows were kept while they fit, for its projection).
    expect([...chars.values()].reduce((a, b) => a + b, 0)).toBeGreaterThan(2 * UNPROJECTED_KEPT_MAX_CHARS);
    expect(most).toBeGreaterThan(0);
    expect(most).toBeLessThanOrEqual(UNPROJECTED_KEPT_MAX_CHARS);
    await runInDurableObject(runStream(env, c.workflowId), (_instance, state) => {
      // A wake reads back which rows D1 lacks, not their data.
      const log = new EventLog(state.storage.sql);
      expect(log.unprojected().map((r) => r.seq)).toEqual([...chars.keys()]);
      expect(log.keptUnprojectedChars()).toBe(0);
    });
  });

  it("after the outage and a wake, the backlog reaches D1 once, in log order, in batches of at most PROJECTION_BATCH_MAX_CHARS (a larger row alone)", async () => {
    const org = await meteredOrg(HOLD * 2);
    const c = command(org.organizationId);
    expect((await runStream(env, c.workflowId).start(c)).ok).toBe(true);
    const chars = await outageBacklog(c.workflowId, "r-after-outage");
    const { d1, count } = countingD1(env.DB);
    /** The rows each batch took care of, as the projection marked them. */
    const batches: number[][] = [];
    await runInDurableObject(runStream(env, c.workflowId), async (_instance, state) => {
      const log = new EventLog(state.storage.sql);
      const mark = log.markProjected.bind(log);
      log.markProjected = (seqs, projected) => {
        batches.push([...seqs]);
        mark(seqs, projected);
      };
      const projection = new D1Projection(d1, log, new WaitingDetector(log, metaOf(state.storage.sql)));
      await projection.apply(c.workflowId, false);
      expect(log.hasUnprojected()).toBe(false);
    });
    expect(batches.flat()).toEqual([...chars.keys()]);
    for (const batch of batches) {
      const size = batch.reduce((n, seq) => n + chars.get(seq)!, 0);
      if (batch.length > 1) expect(size).toBeLessThanOrEqual(PROJECTION_BATCH_MAX_CHARS);
    }
    // The start and three steps; the large step alone; three steps, the usage and the finish.
    expect(batches.map((b) => b.length)).toEqual([4, 1, 5]);
    expect(count.batches).toBe(3);
    const stepCount = await env.DB.prepare(
      "SELECT COUNT(*) AS n FROM step_runs s JOIN runs r ON r.id = s.run_id WHERE r.temporal_workflow_id = ? AND s.status = 'completed' AND s.outputs_in_log = 1",
    )
      .bind(c.workflowId)
      .first("n");
    expect(stepCount).toBe(7);
    expect(await runRow(c.workflowId)).toMatchObject({ status: "completed", credit_hold: 0, credits_charged: 42, tokens_total: 42 });
  });
});
