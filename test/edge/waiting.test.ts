/**
 * Waiting detection in a run's DO (durable-objects/run-stream/waiting.ts): a run is waiting once
 * its history ends with a completed workflow task and nothing it started is in flight. The check
 * runs after every history batch, so it reads the log's derived state, never the run's history.
 */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { EventLog } from "../../durable-objects/run-stream/event-log.ts";
import { Meta } from "../../durable-objects/run-stream/meta.ts";
import { createSchema } from "../../durable-objects/run-stream/storage.ts";
import { WaitingDetector } from "../../durable-objects/run-stream/waiting.ts";
import { runStream } from "../../src/run-stream-client.ts";
import type { RunEvent } from "../../src/shared/run-event-schema.ts";
import { runResetEvent } from "../../src/shared/run-events.ts";
import { seedCatalog, seedOrganization } from "./helpers.ts";
import { createRunningRun, historyEvent, push } from "./stream-helpers.ts";
import { instrumentedSql } from "./sql-helpers.ts";

const e = (name: string) => `EVENT_TYPE_${name}`;
const TASK_DONE = e("WORKFLOW_TASK_COMPLETED");

/** A run's history: event 1 starts it, then one event per type given, ids from 2. */
const history = (runId: string, types: string[], from = 2) => types.map((type, i) => historyEvent(runId, from + i, type) as RunEvent);

describe("a run waits when its workflow task completed and nothing is in flight", () => {
  it("activities, timers and child workflows in flight are not waiting; once each has ended, it is; the same after the DO wakes again", async () => {
    const workflowId = `waiting-${crypto.randomUUID()}`;
    await runInDurableObject(runStream(env, workflowId), async (_instance, state) => {
      createSchema(state.storage.sql);
      const runId = crypto.randomUUID();
      const log = new EventLog(state.storage.sql);
      const waiting = () => new WaitingDetector(log, new Meta(state.storage.sql, [])).isWaiting(runId);
      const steps: Array<[string[], boolean]> = [
        [[e("WORKFLOW_TASK_SCHEDULED"), e("WORKFLOW_TASK_STARTED"), TASK_DONE], true],
        [[e("ACTIVITY_TASK_SCHEDULED"), e("TIMER_STARTED"), TASK_DONE], false],
        [[e("ACTIVITY_TASK_COMPLETED"), e("WORKFLOW_TASK_SCHEDULED"), e("WORKFLOW_TASK_STARTED"), TASK_DONE], false],
        [[e("TIMER_FIRED"), e("WORKFLOW_TASK_SCHEDULED"), e("WORKFLOW_TASK_STARTED"), TASK_DONE], true],
        [[e("START_CHILD_WORKFLOW_EXECUTION_INITIATED"), TASK_DONE], false],
        [[e("CHILD_WORKFLOW_EXECUTION_COMPLETED"), e("WORKFLOW_TASK_SCHEDULED")], false], // the task has not completed yet
        [[e("WORKFLOW_TASK_STARTED"), TASK_DONE], true],
      ];
      let next = 1;
      log.append([historyEvent(runId, next++) as RunEvent]);
      for (const [types, expected] of steps) {
        log.append(history(runId, types, next));
        // The same event again (the relay re-sends after a restart) changes nothing.
        log.append(history(runId, types, next));
        next += types.length;
        expect(waiting(), types.join(",")).toBe(expected);
        // A DO that wakes reads the log back: the same answer.
        expect(new WaitingDetector(new EventLog(state.storage.sql), new Meta(state.storage.sql, [])).isWaiting(runId)).toBe(expected);
      }
    });
  });

  it("the check reads no row of the run's history, however long it is (a run with many signals checks after each)", async () => {
    const workflowId = `waiting-${crypto.randomUUID()}`;
    await runInDurableObject(runStream(env, workflowId), async (_instance, state) => {
      createSchema(state.storage.sql);
      const runId = crypto.randomUUID();
      const counting = instrumentedSql(state.storage.sql);
      const log = new EventLog(counting.sql);
      log.append([historyEvent(runId, 1) as RunEvent]);
      // 500 signals, each answered by a workflow task that schedules and completes an activity.
      const types: string[] = [];
      for (let i = 0; i < 500; i++)
        types.push(e("WORKFLOW_EXECUTION_SIGNALED"), e("ACTIVITY_TASK_SCHEDULED"), e("ACTIVITY_TASK_COMPLETED"), TASK_DONE);
      log.append(history(runId, types));
      const detector = new WaitingDetector(log, new Meta(state.storage.sql, []));
      const before = counting.rowsRead();
      expect(detector.isWaiting(runId)).toBe(true);
      expect(counting.rowsRead() - before).toBe(0);
    });
  });
});

describe("the run row's waiting_since follows the workflow's current run", () => {
  beforeAll(async () => {
    await seedCatalog();
  });

  it("a reset's run that waits is shown waiting, though the run it replaced was waiting too (the reset cleared the row's flag)", async () => {
    const { organizationId } = await seedOrganization();
    const { workflowId, runId } = await createRunningRun(organizationId);
    const waitingSince = async () =>
      (
        await env.DB.prepare("SELECT waiting_since FROM runs WHERE temporal_workflow_id = ?")
          .bind(workflowId)
          .first<{ waiting_since: string | null }>()
      )?.waiting_since;
    const waits = (run: string) => [
      historyEvent(run, 1),
      ...history(run, [e("WORKFLOW_TASK_SCHEDULED"), e("WORKFLOW_TASK_STARTED"), TASK_DONE]),
    ];
    await push(workflowId, waits(runId));
    expect(await waitingSince(), "the first run waits").toEqual(expect.any(String));
    const resetRun = crypto.randomUUID();
    await push(workflowId, [runResetEvent(resetRun, runId)]);
    expect(await waitingSince(), "the reset opened the row again").toBeNull();
    await push(workflowId, waits(resetRun));
    expect(await waitingSince(), "the reset's run waits").toEqual(expect.any(String));
  });
});
