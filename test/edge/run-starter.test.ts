/**
 * The run's DO owns the start (durable-objects/run-stream/run-starter.ts): refusals before
 * acceptance leave nothing behind; an accepted start is idempotent under its accept id, a second
 * start under the same workflow id is 409, and a start the host did not confirm stays in the
 * outbox with its alarm armed (edge tests have no host: HOST_URL is a closed port).
 */

import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { DEFAULT_MAX_OPEN_RUNS_PER_ORGANIZATION, START_ATTEMPT_TIMEOUT_MS } from "../../durable-objects/run-stream/constants.ts";
import {
  ACCEPTANCE_GRACE_MS,
  ACCEPTANCE_MARKER_PREFIX,
  type AcceptanceMarker,
  RunStarter,
  START_RETRY_BASE_MS,
  type StartCommand,
} from "../../durable-objects/run-stream/run-starter.ts";
import { runStream } from "../../src/run-stream-client.ts";
import { prepareStart } from "../../src/services/runs.ts";
import { interceptD1InPlace, loseAnswersInPlace } from "../support/d1-intercept.ts";
import { admin, call, meteredOrg, orgRow, seedCatalog, seedOrganization } from "./helpers.ts";

let org: Awaited<ReturnType<typeof seedOrganization>>;
beforeAll(async () => {
  org = await seedOrganization();
  await seedCatalog();
});

function command(input: unknown = { name: "Ada" }, organizationId = org.organizationId): StartCommand {
  const runUuid = crypto.randomUUID();
  return { organizationId, workflowId: `hello-${runUuid}`, runUuid, target: { kind: "code", by: { name: "hello" }, input } };
}

const rowsOf = async (workflowId: string) =>
  (await env.DB.prepare("SELECT status, credit_hold FROM runs WHERE temporal_workflow_id = ?").bind(workflowId).all()).results;
const outboxOf = (workflowId: string) =>
  runInDurableObject(runStream(env, workflowId), (_i, state) => state.storage.sql.exec("SELECT state, attempts FROM run_start").toArray());
/** The acceptance markers in the DO's key-value storage (run-starter.ts). */
const markersOf = (workflowId: string) =>
  runInDurableObject(runStream(env, workflowId), (_i, state) => [
    ...state.storage.kv.list<AcceptanceMarker>({ prefix: ACCEPTANCE_MARKER_PREFIX }),
  ]);
/** The DO's own tables (workerd's internal `_cf_` ones left out). */
const tablesOf = (workflowId: string) =>
  runInDurableObject(runStream(env, workflowId), (_i, state) =>
    state.storage.sql
      .exec<{ name: string }>(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_cf\\_%' ESCAPE '\\' AND name <> 'sqlite_sequence'",
      )
      .toArray()
      .map((t) => t.name),
  );

describe("RunStream.start: before acceptance", () => {
  it("bad input is 400 invalid_input, with no row and nothing in the DO's storage", async () => {
    const c = command({ name: 42 });
    const reply = await runStream(env, c.workflowId).start(c);
    expect(reply).toMatchObject({ ok: false, error: { code: "invalid_input" } });
    expect(await rowsOf(c.workflowId)).toEqual([]);
    // Not even an empty schema: one refusal per request must not leave one DO's storage each.
    expect(await tablesOf(c.workflowId)).toEqual([]);
  });

  it("an unknown workflow is 404; too few credits is 402; neither leaves a row or a hold", async () => {
    const unknown = { ...command(), target: { kind: "code" as const, by: { name: "nope" }, input: {} } };
    expect(await runStream(env, unknown.workflowId).start(unknown)).toMatchObject({ ok: false, error: { code: "workflow_not_found" } });
    const poor = await seedOrganization();
    await admin("POST", `/admin/v1/organizations/${poor.organizationId}/credits`, { amount: 5 });
    const c = command({ name: "Ada" }, poor.organizationId);
    expect(await runStream(env, c.workflowId).start(c)).toMatchObject({ ok: false, error: { code: "insufficient_credits" } });
    expect(await rowsOf(c.workflowId)).toEqual([]);
    expect(await tablesOf(unknown.workflowId)).toEqual([]);
    expect(await tablesOf(c.workflowId)).toEqual([]);
    expect(await markersOf(c.workflowId)).toEqual([]);
    const held = await env.DB.prepare("SELECT credits_reserved FROM organizations WHERE id = ?").bind(poor.organizationId).first();
    expect(held).toEqual({ credits_reserved: 0 });
  });

  it("security: an organization with MAX_OPEN_RUNS_PER_ORGANIZATION runs open is 429 too_many_open_runs, on every start route, leaving nothing", async () => {
    const busy = await seedOrganization();
    const limit = Number(env.MAX_OPEN_RUNS_PER_ORGANIZATION);
    expect(limit).toBe(DEFAULT_MAX_OPEN_RUNS_PER_ORGANIZATION);
    const hello = (await env.DB.prepare("SELECT id FROM workflows WHERE name = 'hello' AND organization_id IS NULL").first<{
      id: string;
    }>())!.id;
    // `limit` runs waiting for ever (an approval nobody approves), written straight into D1.
    await env.DB.prepare(
      `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?3)
       INSERT INTO runs (id, organization_id, workflow_id, workflow_name, temporal_workflow_id, status, input)
       SELECT lower(hex(randomblob(16))), ?1, ?2, 'hello', 'open-' || lower(hex(randomblob(16))), 'running', '{}' FROM n`,
    )
      .bind(busy.organizationId, hello, limit)
      .run();
    const c = command({ name: "Ada" }, busy.organizationId);
    expect(await runStream(env, c.workflowId).start(c)).toMatchObject({ ok: false, error: { code: "too_many_open_runs" } });
    expect(await rowsOf(c.workflowId)).toEqual([]);
    expect(await tablesOf(c.workflowId)).toEqual([]);
    const headers = { authorization: `Bearer ${busy.key}`, "content-type": "application/json" };
    const start = await call("/workflow/start", {
      method: "POST",
      headers,
      body: JSON.stringify({ workflowName: "hello", input: { name: "Ada" } }),
    });
    expect(start.status).toBe(429);
    expect(await start.json()).toMatchObject({ error: "TooManyOpenRunsError", code: "too_many_open_runs" });
    const run = await call("/workflow/run", {
      method: "POST",
      headers,
      body: JSON.stringify({ workflowName: "hello", input: { name: "Ada" } }),
    });
    expect(run.status).toBe(429);
    const count = await env.DB.prepare("SELECT COUNT(*) AS n FROM runs WHERE organization_id = ?")
      .bind(busy.organizationId)
      .first<{ n: number }>();
    expect(count!.n).toBe(limit);
    // One ends: there is room for one more.
    await env.DB.prepare("UPDATE runs SET status = 'completed' WHERE id = (SELECT id FROM runs WHERE organization_id = ? LIMIT 1)")
      .bind(busy.organizationId)
      .run();
    const next = command({ name: "Ada" }, busy.organizationId);
    expect((await runStream(env, next.workflowId).start(next)).ok).not.toBe(false);
  });
});

describe("RunStream.start: after acceptance", () => {
  it("the same start again gets the same answer (one row); another start under the workflow id is 409", async () => {
    const c = command();
    const first = await runStream(env, c.workflowId).start(c);
    expect(first).toMatchObject({ ok: true, started: { workflowId: c.workflowId, runId: null, status: "scheduled", id: c.runUuid } });
    expect(await runStream(env, c.workflowId).start(c)).toEqual(first);
    const other = { ...c, runUuid: crypto.randomUUID() };
    expect(await runStream(env, c.workflowId).start(other)).toMatchObject({ ok: false, error: { code: "workflow_id_in_use" } });
    expect(await rowsOf(c.workflowId)).toEqual([{ status: "scheduled", credit_hold: 0 }]);
  });

  it("a start row left behind by a refused run whose D1 row is gone (the DO went away in between) still makes the id taken: 409, nothing of the new start kept", async () => {
    const org = await meteredOrg(100_000);
    const c = command({ name: "Ada" }, org.organizationId);
    // What a refused start leaves when the DO goes away after undoing its D1 row and before forgetting its own.
    await runStream(env, c.workflowId).start(c);
    await env.DB.prepare("DELETE FROM runs WHERE id = ?").bind(c.runUuid).run();
    expect(await outboxOf(c.workflowId)).toHaveLength(1);
    const next = { ...c, runUuid: crypto.randomUUID() };
    expect(await runStream(env, c.workflowId).start(next)).toMatchObject({ ok: false, error: { code: "workflow_id_in_use" } });
    expect(await rowsOf(c.workflowId)).toEqual([]);
    expect(await outboxOf(c.workflowId)).toHaveLength(1);
    expect(await orgRow(org.organizationId)).toMatchObject({ balance: 100_000, reserved: 0 });
  });

  it("an unconfirmed start stays in the outbox: each alarm makes one more attempt and re-arms", async () => {
    const c = command();
    await runStream(env, c.workflowId).start(c);
    expect(await outboxOf(c.workflowId)).toEqual([{ state: "pending", attempts: 1 }]);
    // Make the next attempt due now, then fire the alarm.
    await runInDurableObject(runStream(env, c.workflowId), (_i, state) =>
      state.storage.sql.exec("UPDATE run_start SET next_attempt_at = 0"),
    );
    const fired = Date.now();
    expect(await runDurableObjectAlarm(runStream(env, c.workflowId))).toBe(true);
    expect(await outboxOf(c.workflowId)).toEqual([{ state: "pending", attempts: 2 }]);
    const alarm = await runInDurableObject(runStream(env, c.workflowId), (_i, state) => state.storage.getAlarm());
    // The second attempt's time limit, then twice the first pause (1 s after the first attempt, 2 s after the second).
    expect(alarm).toBeGreaterThanOrEqual(fired + START_ATTEMPT_TIMEOUT_MS + 2 * START_RETRY_BASE_MS);
    expect(alarm).toBeLessThan(Date.now() + START_ATTEMPT_TIMEOUT_MS + 3 * START_RETRY_BASE_MS);
    expect(await rowsOf(c.workflowId)).toEqual([{ status: "scheduled", credit_hold: 0 }]);
  });
});

/**
 * Starts `c` in an instance of its DO that goes away once D1 has the run's row: the accepting
 * statement lands and its answer never comes back (the instance went away between the D1 row and
 * the outbox row). The instance is a RunStarter of its own over the DO's storage, so the DO's
 * own starter knows nothing of it, as a new instance would not.
 */
async function startThatDiesAfterD1(c: StartCommand): Promise<void> {
  await runInDurableObject(runStream(env, c.workflowId), async (_i, state) => {
    let resolveLanded!: () => void;
    const landed = new Promise<void>((resolve) => {
      resolveLanded = resolve;
    });
    const restore = loseAnswersInPlace(env.DB, /^\s*INSERT INTO runs\b/, () => {
      resolveLanded();
      return new Promise<never>(() => {});
    });
    try {
      const dying = new RunStarter({
        sql: state.storage.sql,
        hasSchema: () => false,
        env,
        storage: state.storage,
        prepare: prepareStart,
        isSettledStartIn: async () => true,
        recordStarted: async () => {},
        noteNeverStarted: () => undefined,
      });
      void dying.start(c);
      await landed;
    } finally {
      restore();
    }
  });
}

/** Moves the DO's acceptance markers back past their grace, as if that much time had passed. */
const ageMarkers = (workflowId: string) =>
  runInDurableObject(runStream(env, workflowId), (_i, state) => {
    for (const [key, marker] of state.storage.kv.list<AcceptanceMarker>({ prefix: ACCEPTANCE_MARKER_PREFIX }))
      state.storage.kv.put(key, { ...marker, at: marker.at - ACCEPTANCE_GRACE_MS - 1 });
  });

const idempotencyKeysOf = async (organizationId: string) =>
  (await env.DB.prepare("SELECT key, run_uuid FROM idempotency_keys WHERE organization_id = ?").bind(organizationId).all()).results;

describe("RunStream.start: the DO goes away between the run's D1 row and its outbox row", () => {
  it("the alarm undoes the half-accepted start: no row, no hold, the Idempotency-Key given back, the id free, no storage kept", async () => {
    const metered = await meteredOrg(100_000);
    const c: StartCommand = {
      ...command({ name: "Ada" }, metered.organizationId),
      idempotency: { key: `key-${crypto.randomUUID()}`, fingerprint: "f", replayed: false },
    };
    await startThatDiesAfterD1(c);
    // What the instance left: the row holding credits, the key claimed, the marker with its alarm.
    expect(await rowsOf(c.workflowId)).toEqual([{ status: "scheduled", credit_hold: expect.any(Number) }]);
    expect((await orgRow(metered.organizationId))!.reserved).toBeGreaterThan(0);
    expect(await idempotencyKeysOf(metered.organizationId)).toHaveLength(1);
    expect(await markersOf(c.workflowId)).toHaveLength(1);

    // Within its grace the alarm leaves it (the accepting statement could still be on its way) and comes back.
    expect(await runDurableObjectAlarm(runStream(env, c.workflowId))).toBe(true);
    expect(await rowsOf(c.workflowId)).toHaveLength(1);
    await ageMarkers(c.workflowId);
    expect(await runDurableObjectAlarm(runStream(env, c.workflowId))).toBe(true);

    expect(await rowsOf(c.workflowId)).toEqual([]);
    expect(await orgRow(metered.organizationId)).toMatchObject({ balance: 100_000, reserved: 0 });
    expect(await idempotencyKeysOf(metered.organizationId)).toEqual([]);
    expect(await markersOf(c.workflowId)).toEqual([]);
    expect(await tablesOf(c.workflowId)).toEqual([]);
    // The caller was never told the run was accepted: the workflow id is free for a new start.
    const again = { ...c, runUuid: crypto.randomUUID(), idempotency: undefined };
    expect(await runStream(env, c.workflowId).start(again)).toMatchObject({
      ok: true,
      started: { status: "scheduled", id: again.runUuid },
    });
  });

  it("an undo D1 refuses in the alarm is tried again later: the alarm is set again (not left to the runtime's few retries), and a later alarm undoes it", async () => {
    const metered = await meteredOrg(100_000);
    const c = command({ name: "Ada" }, metered.organizationId);
    await startThatDiesAfterD1(c);
    await ageMarkers(c.workflowId);
    let undoTries = 0;
    const undo = interceptD1InPlace(env.DB, (call) => {
      if (call.kind !== "statement" || !/^\s*DELETE FROM runs\b/.test(call.sql)) return;
      undoTries++;
      return Promise.reject(new Error("D1 is unavailable (test)"));
    });
    const warn = vi.spyOn(console, "warn").mockImplementation(() => undefined);
    try {
      const fired = Date.now();
      expect(await runDurableObjectAlarm(runStream(env, c.workflowId))).toBe(true);
      expect(undoTries).toBe(1);
      const alarm = await runInDurableObject(runStream(env, c.workflowId), (_i, state) => state.storage.getAlarm());
      // Backed off, not at once: a D1 outage does not spin the alarm.
      expect(alarm).toBeGreaterThanOrEqual(fired + ACCEPTANCE_GRACE_MS);
      expect(warn).toHaveBeenCalledWith(expect.stringContaining("tried again later"));
      // An alarm before that time (another part's) does not ask D1 again.
      expect(await runDurableObjectAlarm(runStream(env, c.workflowId))).toBe(true);
      expect(undoTries).toBe(1);
    } finally {
      undo();
      warn.mockRestore();
    }
    expect(await rowsOf(c.workflowId)).toHaveLength(1);
    // A new instance (the backoff is in memory) tries at once; D1 answers now.
    await evictDurableObject(runStream(env, c.workflowId));
    expect(await runDurableObjectAlarm(runStream(env, c.workflowId))).toBe(true);
    expect(await rowsOf(c.workflowId)).toEqual([]);
    expect(await orgRow(metered.organizationId)).toMatchObject({ balance: 100_000, reserved: 0 });
    expect(await markersOf(c.workflowId)).toEqual([]);
  });

  it("the next start under the same workflow id undoes it first and is accepted; an accepted start leaves no marker", async () => {
    const metered = await meteredOrg(100_000);
    const c = command({ name: "Ada" }, metered.organizationId);
    await startThatDiesAfterD1(c);
    await ageMarkers(c.workflowId);
    const next = { ...c, runUuid: crypto.randomUUID() };
    expect(await runStream(env, c.workflowId).start(next)).toMatchObject({ ok: true, started: { status: "scheduled", id: next.runUuid } });
    const rows = (await env.DB.prepare("SELECT id, credit_hold FROM runs WHERE temporal_workflow_id = ?").bind(c.workflowId).all())
      .results as Array<{ id: string; credit_hold: number }>;
    expect(rows.map((r) => r.id)).toEqual([next.runUuid]);
    expect((await orgRow(metered.organizationId))!.reserved).toBe(rows[0]!.credit_hold);
    expect(await markersOf(c.workflowId)).toEqual([]);
    expect(await outboxOf(c.workflowId)).toEqual([{ state: "pending", attempts: 1 }]);
  });

  it("an Idempotency-Key retry meanwhile is 409 idempotency_key_in_use, not a replay of a run that will not run; once undone, the key starts a new run", async () => {
    const metered = await meteredOrg(100_000);
    const key = `key-${crypto.randomUUID()}`;
    // Each request of the client gets its own ids at the edge (and so its own DO), with the same key.
    const request = (): StartCommand => ({
      ...command({ name: "Ada" }, metered.organizationId),
      idempotency: { key, fingerprint: "f", replayed: false },
    });
    const first = request();
    await startThatDiesAfterD1(first);
    const retry = request();
    expect(await runStream(env, retry.workflowId).start(retry)).toMatchObject({
      ok: false,
      error: { code: "idempotency_key_in_use", headers: { "retry-after": "1" } },
    });
    expect(await rowsOf(retry.workflowId)).toEqual([]);

    await ageMarkers(first.workflowId);
    expect(await runDurableObjectAlarm(runStream(env, first.workflowId))).toBe(true);
    const later = request();
    const reply = await runStream(env, later.workflowId).start(later);
    expect(reply).toMatchObject({ ok: true, started: { status: "scheduled", id: later.runUuid } });
    expect("replayed" in reply && reply.replayed).toBeFalsy();
    expect(await idempotencyKeysOf(metered.organizationId)).toEqual([{ key, run_uuid: later.runUuid }]);
  });
});
