import { abortAllDurableObjects, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { DEFAULT_WATCHDOG_QUIET_MS, MAX_WATCHDOG_INTERVAL_MS } from "../../durable-objects/run-stream.ts";
import { LOST_RUN_CHECK_INTERVAL_MS } from "../../durable-objects/run-stream/constants.ts";
import type { EventLog } from "../../durable-objects/run-stream/event-log.ts";
import type { Meta } from "../../durable-objects/run-stream/meta.ts";
import { runStream } from "../../src/run-stream-client.ts";
import { HOST_PATHS } from "../../src/shared/host-api.ts";
import type { RunEvent } from "../../src/shared/run-event-schema.ts";
import { runResetEvent } from "../../src/shared/run-events.ts";
import { collectHistoryStream } from "../support/sse.ts";
import { call, scriptHost, seedCatalog, seedOrganization } from "./helpers.ts";
import { closeEvent, continuedAsNewEvents, createRunningRun, finishedEvent, historyEvent, push } from "./stream-helpers.ts";
import { hookUrl, received, register, until } from "./webhook-helpers.ts";

const alarmIn = async (workflowId: string) => {
  const at = await runInDurableObject(runStream(env, workflowId), (_i, state) => state.storage.getAlarm());
  return at === null ? null : at - Date.now();
};

/**
 * A host whose Temporal has no such workflow (retention deleted it, or the namespace was wiped): it
 * follows (a no-op), and answers the result with its own 404 run_not_found (host/control-api.ts).
 * `answer` replaces that 404, for the answers that are not "gone".
 */
const hostWithoutWorkflow = (workflowId: string, answer?: () => Response) =>
  scriptHost((_request, path) => {
    if (path === HOST_PATHS.follow(workflowId)) return Response.json({ following: true });
    if (path === HOST_PATHS.result(workflowId))
      return answer
        ? answer()
        : Response.json({ error: { code: "run_not_found", message: `workflow not found for ID: ${workflowId}` } }, { status: 404 });
    throw new TypeError("connection refused");
  });

const rowOf = (workflowId: string) =>
  env.DB.prepare("SELECT status, temporal_run_id, completed_at FROM runs WHERE temporal_workflow_id = ?").bind(workflowId).first();

// Edge tests have no host (HOST_URL is a closed port): the watchdog's checks fail and it retries.
describe("RunStream watchdog", () => {
  beforeAll(async () => {
    await seedCatalog();
  });

  it("arms while the run is open, backs off while it stays quiet, and stops once it is finished", async () => {
    const org = await seedOrganization();
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, [historyEvent(runId, 1)]);
    const first = (await alarmIn(workflowId))!;
    expect(first).toBeGreaterThan(DEFAULT_WATCHDOG_QUIET_MS * 0.9);
    expect(first).toBeLessThanOrEqual(DEFAULT_WATCHDOG_QUIET_MS);

    expect(await runDurableObjectAlarm(runStream(env, workflowId))).toBe(true);
    const second = (await alarmIn(workflowId))!;
    expect(second).toBeGreaterThan(DEFAULT_WATCHDOG_QUIET_MS * 1.8);
    expect(await runDurableObjectAlarm(runStream(env, workflowId))).toBe(true);
    expect((await alarmIn(workflowId))!).toBeGreaterThan(DEFAULT_WATCHDOG_QUIET_MS * 3.6);

    // New events: back to the short interval.
    await push(workflowId, [historyEvent(runId, 2)]);
    expect((await alarmIn(workflowId))!).toBeLessThanOrEqual(DEFAULT_WATCHDOG_QUIET_MS);

    await push(workflowId, [closeEvent(runId, 3), finishedEvent(runId)]);
    expect(await alarmIn(workflowId)).toBeNull();
    const row = await env.DB.prepare("SELECT status FROM runs WHERE temporal_workflow_id = ?").bind(workflowId).first<{ status: string }>();
    expect(row?.status).toBe("completed");
  });

  it("stops once the workflow is over, though the last event is the late end of a run a reset replaced (D1 needs nothing for it)", async () => {
    const org = await seedOrganization();
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, [historyEvent(runId, 1)]);
    const resetRun = crypto.randomUUID();
    await push(workflowId, [runResetEvent(resetRun, runId)]);
    await push(workflowId, [historyEvent(resetRun, 1), closeEvent(resetRun, 2), finishedEvent(resetRun)]);
    expect(await alarmIn(workflowId)).toBeNull();
    // The replaced run's relay was behind: its terminated end comes after the reset's run ended.
    await push(workflowId, [closeEvent(runId, 2), finishedEvent(runId, "terminated")]);
    const pending = await runInDurableObject(runStream(env, workflowId), (_i, state) =>
      state.storage.sql.exec("SELECT type FROM events WHERE projected <> 1").toArray(),
    );
    expect(pending).toEqual([]);
    expect(await alarmIn(workflowId)).toBeNull();
    const row = await env.DB.prepare("SELECT status, temporal_run_id FROM runs WHERE temporal_workflow_id = ?").bind(workflowId).first();
    expect(row).toEqual({ status: "completed", temporal_run_id: resetRun });
  });

  it("a trace R2 will not take fails neither the push that recorded the run's events nor the watchdog: a quiet run is still reconciled, the trace tried again", async () => {
    const org = await seedOrganization();
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    const nextRun = crypto.randomUUID();
    const put = vi.spyOn(env.TRACES, "put").mockRejectedValue(new Error("R2 is unavailable (test)"));
    const warn = vi.spyOn(console, "warn").mockImplementation(() => undefined);
    // The host knows the run continued as new and then completed; its relay lost the end.
    const restoreHost = scriptHost((_request, path) => {
      if (path === HOST_PATHS.follow(workflowId)) return Response.json({ following: true });
      if (path === HOST_PATHS.result(workflowId))
        return Response.json({ workflowId, runId: nextRun, status: "completed", output: { ok: true }, error: null, closeTime: null });
      throw new TypeError("connection refused");
    });
    try {
      // The first run is complete (its trace is due), the next one open and then quiet.
      // Recorded and in D1: answered as taken (a failure would have the host push them again, in vain).
      expect(
        await push(workflowId, [historyEvent(runId, 1), ...continuedAsNewEvents(runId, 2, nextRun), historyEvent(nextRun, 1)]),
      ).toEqual({
        accepted: 4,
        duplicates: 0,
      });
      expect(await runDurableObjectAlarm(runStream(env, workflowId))).toBe(true);
      const row = await env.DB.prepare("SELECT status, temporal_run_id FROM runs WHERE temporal_workflow_id = ?").bind(workflowId).first();
      expect(row).toEqual({ status: "completed", temporal_run_id: nextRun });
      // The first run's trace is still missing: the alarm stays set for it.
      expect(await alarmIn(workflowId)).not.toBeNull();
      expect(warn).toHaveBeenCalledWith(expect.stringContaining("trace not written"));
    } finally {
      restoreHost();
      put.mockRestore();
      warn.mockRestore();
    }
    // R2 is back: the next alarm writes it; once the relay brings the last run's close, nothing is left to watch.
    expect(await runDurableObjectAlarm(runStream(env, workflowId))).toBe(true);
    expect(await env.TRACES.head(`traces/${workflowId}/${runId}.json`)).not.toBeNull();
    await push(workflowId, [closeEvent(nextRun, 2)]);
    expect(await alarmIn(workflowId)).toBeNull();
  });

  it("a push to a workflow with many finished runs looks at the traces of the runs that changed, not at every earlier run's", async () => {
    const org = await seedOrganization();
    const { workflowId, runId: first } = await createRunningRun(org.organizationId);
    const stub = runStream(env, workflowId);
    const partsOf = (instance: unknown) => (instance as { parts: { log: EventLog; meta: Meta } }).parts;
    // A long continue-as-new chain, appended in the DO (a push per run would take minutes); D1 needs nothing of it here.
    const runs = [first, ...Array.from({ length: 300 }, () => crypto.randomUUID())];
    await runInDurableObject(stub, (instance) => {
      const { log } = partsOf(instance);
      for (const [i, runId] of runs.slice(0, -1).entries()) {
        const rows = log.append([historyEvent(runId, 1), ...continuedAsNewEvents(runId, 2, runs[i + 1]!)] as RunEvent[]);
        log.markProjected(rows.map((r) => r.seq));
      }
    });
    const last = runs.at(-1)!;
    // The next push writes every complete run's trace.
    await push(workflowId, [historyEvent(last, 1)]);
    for (const runId of [first, runs[150]!, runs.at(-2)!]) {
      expect(await env.TRACES.head(`traces/${workflowId}/${runId}.json`), runId).not.toBeNull();
    }
    // The pushes after it look at no earlier run.
    const spies = await runInDurableObject(stub, (instance) => {
      const { log, meta } = partsOf(instance);
      return { get: vi.spyOn(meta, "get"), complete: vi.spyOn(log, "isComplete") };
    });
    try {
      await push(workflowId, [historyEvent(last, 2)]);
      const traceReads = spies.get.mock.calls.filter(([key]) => key.startsWith("trace:")).length;
      expect({ traceReads, completeChecks: spies.complete.mock.calls.length }).toEqual({ traceReads: 0, completeChecks: 0 });
      // The last run ends: its trace is written all the same, and nothing is left to watch.
      await push(workflowId, [closeEvent(last, 3), finishedEvent(last)]);
      expect(spies.get.mock.calls.filter(([key]) => key.startsWith("trace:")).length).toBeLessThan(10);
    } finally {
      spies.get.mockRestore();
      spies.complete.mockRestore();
    }
    expect(await env.TRACES.head(`traces/${workflowId}/${last}.json`)).not.toBeNull();
    expect(await alarmIn(workflowId)).toBeNull();
  });

  it("Temporal no longer has the workflow (404 run_not_found) and the log has its outcome but not its closing event: the run is finished with the history it has, for good", async () => {
    const org = await seedOrganization();
    const name = `lost-history-${crypto.randomUUID()}`;
    await register(org.organizationId, hookUrl(name));
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    // The outcome came first (a status read, say); Temporal's retention deleted the closed run before the relay brought its last events.
    await push(workflowId, [historyEvent(runId, 1), historyEvent(runId, 2), finishedEvent(runId)]);
    expect(await alarmIn(workflowId)).not.toBeNull();
    const auth = { authorization: `Bearer ${org.key}` };
    const stream = collectHistoryStream((await call(`/workflow/${workflowId}/history/stream`, { headers: auth })).body!);
    const warn = vi.spyOn(console, "warn").mockImplementation(() => undefined);
    const restoreHost = hostWithoutWorkflow(workflowId);
    try {
      expect(await runDurableObjectAlarm(runStream(env, workflowId))).toBe(true);
    } finally {
      restoreHost();
      warn.mockRestore();
    }
    // Nothing left to watch: the alarm is gone, the trace written from the log, the webhook sent, the open stream ended.
    expect(await alarmIn(workflowId)).toBeNull();
    expect(await env.TRACES.head(`traces/${workflowId}/${runId}.json`)).not.toBeNull();
    const [message] = await until(async () => {
      const got = await received(name);
      return got.length > 0 ? got : null;
    });
    expect(JSON.parse(message!.body)).toMatchObject({ type: "run.completed", data: { workflowId, runId, status: "completed" } });
    const seen = await stream;
    expect(seen.eventIds).toEqual([1, 2]);
    expect(seen.done).toHaveLength(1);
    expect(await rowOf(workflowId)).toMatchObject({ status: "completed", temporal_run_id: runId });

    // Durable: a new instance of the DO still counts the run finished, and a new stream ends at once.
    await abortAllDurableObjects();
    expect(await runStream(env, workflowId).streamState()).toEqual({ runId, finished: true, lastEventId: 2 });
    const again = await collectHistoryStream((await call(`/workflow/${workflowId}/history/stream`, { headers: auth })).body!);
    expect(again.eventIds).toEqual([1, 2]);
    expect(again.done).toHaveLength(1);
    expect(await alarmIn(workflowId)).toBeNull();
    expect(await received(name)).toHaveLength(1);
  });

  it("only the host's own 404 run_not_found says Temporal has no such workflow: a 503, a timeout, a proxy's 404 or another code record nothing, and the run stays watched", async () => {
    const org = await seedOrganization();
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, [historyEvent(runId, 1), finishedEvent(runId)]);
    const answers: Array<() => Response> = [
      () => Response.json({ error: { code: "temporal_unavailable", message: "Temporal is not reachable from the host" } }, { status: 503 }),
      () => {
        throw new DOMException("The operation was aborted due to timeout", "TimeoutError");
      },
      () => new Response("not found", { status: 404 }), // a tunnel's 404 during a rollout: not the host's answer
      () => Response.json({ error: { code: "workflow_not_found", message: "no such workflow" } }, { status: 404 }),
    ];
    const warn = vi.spyOn(console, "warn").mockImplementation(() => undefined);
    try {
      for (const answer of answers) {
        const restoreHost = hostWithoutWorkflow(workflowId, answer);
        try {
          expect(await runDurableObjectAlarm(runStream(env, workflowId))).toBe(true);
        } finally {
          restoreHost();
        }
        expect(await runStream(env, workflowId).streamState()).toEqual({ runId, finished: false, lastEventId: 1 });
        const next = (await alarmIn(workflowId))!;
        expect(next).toBeGreaterThan(0);
        expect(next).toBeLessThanOrEqual(MAX_WATCHDOG_INTERVAL_MS);
      }
      expect(warn).toHaveBeenCalledWith(expect.stringContaining("run watchdog could not reach the host"));
    } finally {
      warn.mockRestore();
    }
    expect(await env.TRACES.head(`traces/${workflowId}/${runId}.json`)).toBeNull();
    const marks = await runInDurableObject(runStream(env, workflowId), (_i, state) =>
      state.storage.sql.exec("SELECT key FROM meta WHERE key LIKE 'history%' OR key LIKE 'lost%'").toArray(),
    );
    expect(marks).toEqual([]);
    // The relay's close still ends it as usual.
    await push(workflowId, [closeEvent(runId, 2)]);
    expect(await alarmIn(workflowId)).toBeNull();
  });

  it("Temporal no longer has a workflow whose outcome the log lacks: the row is left as it is, the loss logged once at ERROR, and checked every few hours, not every 10 minutes", async () => {
    const org = await seedOrganization();
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, [historyEvent(runId, 1)]);
    const before = await rowOf(workflowId);
    expect(before).toMatchObject({ status: "running", completed_at: null });
    const error = vi.spyOn(console, "error").mockImplementation(() => undefined);
    const restoreHost = hostWithoutWorkflow(workflowId);
    try {
      for (let check = 0; check < 3; check++) {
        expect(await runDurableObjectAlarm(runStream(env, workflowId))).toBe(true);
        const next = (await alarmIn(workflowId))!;
        expect(next).toBeGreaterThan(LOST_RUN_CHECK_INTERVAL_MS - 60_000);
        expect(next).toBeLessThanOrEqual(LOST_RUN_CHECK_INTERVAL_MS);
      }
      const lost = error.mock.calls.filter(([line]) => String(line).includes("Temporal has no such workflow"));
      expect(lost).toHaveLength(1);
      expect(JSON.parse(String(lost[0]![0]))).toMatchObject({ level: "error", workflowId, runId });
    } finally {
      restoreHost();
      error.mockRestore();
    }
    expect(await rowOf(workflowId)).toEqual(before);
    expect(await runStream(env, workflowId).streamState()).toEqual({ runId, finished: false, lastEventId: 1 });
    // Events of the run arrive after all: it is watched as usual again.
    await push(workflowId, [historyEvent(runId, 2)]);
    expect((await alarmIn(workflowId))!).toBeLessThanOrEqual(DEFAULT_WATCHDOG_QUIET_MS);
  });
});
