import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_WATCHDOG_QUIET_MS } from "../../durable-objects/run-stream.ts";
import { runStream } from "../../src/run-stream-client.ts";
import { seedCatalog, seedOrganization } from "./helpers.ts";
import { closeEvent, createRunningRun, finishedEvent, historyEvent, push } from "./stream-helpers.ts";

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
});
