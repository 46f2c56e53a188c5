import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { DEFAULT_WATCHDOG_QUIET_MS } from "../../durable-objects/run-stream.ts";
import { runStream } from "../../src/run-stream-client.ts";
import { HOST_PATHS } from "../../src/shared/host-api.ts";
import { runResetEvent } from "../../src/shared/run-events.ts";
import { scriptHost, seedCatalog, seedOrganization } from "./helpers.ts";
import { closeEvent, continuedAsNewEvents, createRunningRun, finishedEvent, historyEvent, push } from "./stream-helpers.ts";

const alarmIn = async (workflowId: string) => {
  const at = await runInDurableObject(runStream(env, workflowId), (_i, state) => state.storage.getAlarm());
  return at === null ? null : at - Date.now();
};

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
});
