/**
 * The start outbox and the watchdog share the run's DO alarm. A start the edge accepted but
 * Temporal has not confirmed (the host's answer lost) may see the run's events, its end included,
 * arrive first: the run did start. The watchdog then finds the run settled; it must not delete
 * (or postpone) the alarm the outbox's next attempt needs, or the start stays `pending` for good,
 * its request (with the run's envs) kept, and `run.started` never logged.
 */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HOST_PATHS } from "../../src/shared/host-api.ts";
import type { RunEvent } from "../../src/shared/run-event-schema.ts";
import { call, scriptHost, seedCatalog, seedOrganization } from "./helpers.ts";
import { closeEvent, finishedEvent, historyEvent, runStartOutboxAttempt, startHelloInItsDo } from "./stream-helpers.ts";

/** The run id the scripted host answers once it answers starts at all. */
let confirmAs: string | null = null;
/** A 4xx something in front of the host answers starts with (no host error body), while set. */
let proxyAnswers: { status: number; body: string } | null = null;
let restoreHost: () => void;

beforeAll(async () => {
  await seedCatalog();
  restoreHost = scriptHost(async (request, path) => {
    // Made here, in the request that fetches it (a Response is bound to the request that made it).
    if (path === HOST_PATHS.start && proxyAnswers) return new Response(proxyAnswers.body, { status: proxyAnswers.status });
    if (path === HOST_PATHS.start && confirmAs) {
      const { workflowId } = (await request.json()) as { workflowId: string };
      return Response.json({ workflowId, runId: confirmAs });
    }
    throw new TypeError("connection refused");
  });
});
afterAll(() => restoreHost());

type OutboxRow = { state: string; next_attempt_at: number };

describe("the start outbox's alarm", () => {
  it("outlives a run whose events (its end included) arrive before Temporal's confirmation: the next attempt still comes and confirms it", async () => {
    const org = await seedOrganization();
    const { runUuid, workflowId, stub, reply } = await startHelloInItsDo(org.organizationId);
    expect(reply).toMatchObject({ ok: true, started: { runId: null, status: "scheduled" } });
    const runId = crypto.randomUUID();

    // The host did start it: the relay's events arrive, through to the run's end.
    await stub.record(workflowId, [historyEvent(runId, 1), closeEvent(runId, 2), finishedEvent(runId)] as RunEvent[]);
    await runInDurableObject(stub, async (_instance, state) => {
      const outbox = state.storage.sql.exec<OutboxRow>("SELECT state, next_attempt_at FROM run_start").one();
      expect(outbox.state).toBe("pending");
      const alarm = await state.storage.getAlarm();
      expect(alarm).not.toBeNull();
      expect(alarm!).toBeLessThanOrEqual(outbox.next_attempt_at);
    });

    // The next attempt: the host answers now (the same run, under the same accept id).
    confirmAs = runId;
    await runStartOutboxAttempt(stub);
    await runInDurableObject(stub, (_instance, state) => {
      expect(state.storage.sql.exec<{ state: string }>("SELECT state FROM run_start").one().state).toBe("started");
      expect(state.storage.sql.exec("SELECT 1 FROM events WHERE type = 'run.started'").toArray()).toHaveLength(1);
    });
    expect(await env.DB.prepare("SELECT status, temporal_run_id FROM runs WHERE id = ?").bind(runUuid).first()).toEqual({
      status: "completed",
      temporal_run_id: runId,
    });
  });

  it("keeps an accepted start pending when something in front of the host answers a 4xx without the host's error body, and confirms it later", async () => {
    confirmAs = null; // the host unreachable: the start is accepted, not confirmed
    const org = await seedOrganization();
    const { runUuid, workflowId, stub, reply } = await startHelloInItsDo(org.organizationId);
    expect(reply).toMatchObject({ ok: true, started: { workflowId, runId: null, status: "scheduled" } });
    const outbox = () =>
      runInDurableObject(stub, (_instance, state) => state.storage.sql.exec<{ state: string }>("SELECT state FROM run_start").one().state);
    const row = () => env.DB.prepare("SELECT status, temporal_run_id FROM runs WHERE id = ?").bind(runUuid).first();
    try {
      // An access proxy's 403, a tunnel's plain 404 during a rollout: the host was not asked.
      for (const answer of [
        { status: 403, body: "Forbidden" },
        { status: 404, body: "404 Not Found" },
      ]) {
        proxyAnswers = answer;
        await runStartOutboxAttempt(stub);
        expect(await outbox()).toBe("pending");
        expect(await row()).toEqual({ status: "scheduled", temporal_run_id: null });
      }
    } finally {
      proxyAnswers = null;
    }
    const runId = crypto.randomUUID();
    confirmAs = runId;
    await runStartOutboxAttempt(stub);
    expect(await outbox()).toBe("started");
    expect(await row()).toEqual({ status: "running", temporal_run_id: runId });
  });

  it("refuses a reset of a run whose start is still being retried in its DO (409), keeping the outbox's next attempt", async () => {
    confirmAs = null; // the host unreachable: the start is accepted, not confirmed
    const org = await seedOrganization();
    const { workflowId, stub } = await startHelloInItsDo(org.organizationId);
    const nextAttempt = () =>
      runInDurableObject(stub, (_instance, state) =>
        state.storage.sql.exec<OutboxRow>("SELECT state, next_attempt_at FROM run_start").one(),
      );
    const before = await nextAttempt();
    expect(before.state).toBe("pending");
    // A client asks for a reset while the start is being retried (its hold and mark arm the DO's alarm).
    const res = await call(`/workflow/${workflowId}/reset`, {
      method: "POST",
      headers: { authorization: `Bearer ${org.key}`, "content-type": "application/json" },
      body: JSON.stringify({ stepName: "greet" }),
    });
    // 409 run_not_started with Retry-After, from the run's DO: not the host's "outcome unknown" (it is down).
    expect(res.status).toBe(409);
    expect(res.headers.get("retry-after")).toBe("5");
    expect(await res.json()).toMatchObject({ code: "run_not_started", workflowId });
    const alarm = await runInDurableObject(stub, (_instance, state) => state.storage.getAlarm());
    expect(alarm).not.toBeNull();
    expect(alarm!).toBeLessThanOrEqual((await nextAttempt()).next_attempt_at);
  });
});
