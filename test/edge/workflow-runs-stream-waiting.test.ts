/**
 * The Workflow Runs API's stream says when a run becomes blocked on a signal or human input
 * (`workflow-run` `waiting`) and when it goes on (`running`), as its list and detail show it: a
 * `run.waiting` entry the run's DO appends to its log when the latest run's waiting state flips,
 * with the history that flipped it (durable-objects/run-stream/waiting.ts). Driven by pushed events (no host).
 */
import { abortAllDurableObjects } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { runStream } from "../../src/run-stream-client.ts";
import { readSse } from "../support/sse.ts";
import { call, seedCatalog, seedOrganization, signedPost } from "./helpers.ts";
import {
  allFrames,
  closeEvent,
  createRunningRun,
  expectExactResume,
  finishedEvent,
  historyEvent,
  push,
  workflowRunsStream,
} from "./stream-helpers.ts";

const e = (name: string) => `EVENT_TYPE_${name}`;
/** History events `from`, `from + 1`, … of the given types. */
const history = (runId: string, from: number, names: string[]) => names.map((name, i) => historyEvent(runId, from + i, e(name)));
/** A workflow task that ran to completion: the run is blocked when nothing else is in flight. */
const TASK = ["WORKFLOW_TASK_SCHEDULED", "WORKFLOW_TASK_STARTED", "WORKFLOW_TASK_COMPLETED"];

describe("Workflow Runs API stream: a run waiting for a signal or human input", () => {
  let org: { organizationId: string; key: string };
  let stream: Awaited<ReturnType<typeof workflowRunsStream>>;
  beforeAll(async () => {
    await seedCatalog();
    org = await seedOrganization();
    stream = await workflowRunsStream(org.organizationId);
  });

  const runUuidOf = (workflowId: string) => stream.runUuidOf(workflowId);
  const open = (runUuid: string, lastEventId?: string) => stream.open(runUuid, lastEventId);
  /** The `workflow-run` statuses a stream sent, until its `result` or `error`. */
  const statuses = async (res: Response) => {
    const seen: string[] = [];
    for await (const m of readSse(res.body!)) {
      if (m.event === "workflow-run") seen.push(JSON.parse(m.data).content.status);
      if (m.event === "result" || m.event === "error") break;
    }
    return seen;
  };
  const waitingEntries = async (workflowId: string) => (await runStream(env, workflowId).events()).filter((r) => r.type === "run.waiting");

  it("sends waiting when the run's workflow task completed with nothing in flight, running when a signal comes, once each, across a DO restart and redelivered pushes", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    const runUuid = await runUuidOf(workflowId);
    const live = statuses(await open(runUuid));
    const blocked = [historyEvent(runId, 1), ...history(runId, 2, TASK)];
    await push(workflowId, blocked);
    // The relay sends the batch again (a retry whose answer was lost): the log has it, no second frame.
    expect(await push(workflowId, blocked)).toMatchObject({ accepted: 0 });
    expect(await env.DB.prepare("SELECT waiting_since FROM runs WHERE id = ?").bind(runUuid).first("waiting_since")).not.toBeNull();
    // A signal: the workflow runs again (its next task is scheduled), and blocks again once that task completes.
    await push(workflowId, history(runId, 5, ["WORKFLOW_EXECUTION_SIGNALED", "WORKFLOW_TASK_SCHEDULED"]));
    await push(workflowId, history(runId, 7, ["WORKFLOW_TASK_STARTED", "WORKFLOW_TASK_COMPLETED"]));
    // The DO restarts: what it appended is read back, nothing is appended twice.
    await abortAllDurableObjects();
    await push(workflowId, history(runId, 7, ["WORKFLOW_TASK_STARTED", "WORKFLOW_TASK_COMPLETED"]));
    // A second signal, whose task schedules an activity: running, and not waiting while the activity is in flight.
    await push(workflowId, history(runId, 9, ["WORKFLOW_EXECUTION_SIGNALED", ...TASK, "ACTIVITY_TASK_SCHEDULED"]));
    // The activity ends and the run with it, in one push: its end, no flip (a push's state after it is what counts).
    await push(workflowId, [
      ...history(runId, 14, ["ACTIVITY_TASK_STARTED", "ACTIVITY_TASK_COMPLETED", ...TASK]),
      closeEvent(runId, 20),
      finishedEvent(runId),
    ]);
    expect(await live).toEqual(["running", "waiting", "running", "waiting", "running", "completed"]);
    expect((await waitingEntries(workflowId)).map((r) => (r.data as { waiting: boolean }).waiting)).toEqual([true, false, true, false]);
    // Reading it again from the start, and resuming from every id (before and after each waiting frame): the same frames, each once.
    const { frames } = await expectExactResume((lastEventId) => open(runUuid, lastEventId), ["ping", "result", "error"]);
    expect(frames.filter((f) => f.event === "workflow-run").map((f) => JSON.parse(f.data).content)).toEqual(
      ["running", "waiting", "running", "waiting", "running", "completed"].map((status) => ({ workflowRunId: runUuid, status })),
    );
  });

  it("a run that ends while waiting sends its end, not running first, whichever of its end and its closing history comes first", async () => {
    for (const terminated of [false, true]) {
      const { workflowId, runId } = await createRunningRun(org.organizationId);
      const runUuid = await runUuidOf(workflowId);
      await push(workflowId, [historyEvent(runId, 1), ...history(runId, 2, TASK)]);
      const live = statuses(await open(runUuid));
      if (terminated) {
        // Terminated: its closing history event first, then its outcome.
        await push(workflowId, [historyEvent(runId, 5, e("WORKFLOW_EXECUTION_TERMINATED"))]);
        await push(workflowId, [finishedEvent(runId, "terminated")]);
      } else {
        // The outcome can come before the history that leads to it (a result read learns it from the host).
        await push(workflowId, [finishedEvent(runId, "cancelled")]);
        await push(workflowId, history(runId, 5, ["WORKFLOW_EXECUTION_CANCEL_REQUESTED", "WORKFLOW_TASK_SCHEDULED"]));
        await push(workflowId, [historyEvent(runId, 7, e("WORKFLOW_EXECUTION_CANCELED"))]);
      }
      expect(await live, terminated ? "terminated" : "cancelled").toEqual(["running", "waiting", "cancelled"]);
    }
  });

  it("the host cannot push a run.waiting entry: the push is refused whole, nothing recorded", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    const forged = { sourceKey: `waiting:${runId}:9`, type: "run.waiting", at: new Date().toISOString(), data: { runId, waiting: true } };
    const res = await signedPost(`/internal/runs/${workflowId}/events`, { events: [historyEvent(runId, 1), forged] });
    expect(res.status).toBe(400);
    expect(await runStream(env, workflowId).events()).toHaveLength(1); // its run.started only
  });

  it("Output's history stream shows the run's history and nothing else: no waiting entry", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, [historyEvent(runId, 1), ...history(runId, 2, TASK)]);
    await push(workflowId, [...history(runId, 5, ["WORKFLOW_EXECUTION_SIGNALED", ...TASK]), closeEvent(runId, 9), finishedEvent(runId)]);
    expect((await waitingEntries(workflowId)).length).toBeGreaterThan(0);
    const frames = await allFrames(
      await call(`/workflow/${workflowId}/history/stream`, { headers: { authorization: `Bearer ${org.key}` } }),
    );
    expect([...new Set(frames.map((f) => f.event))]).toEqual(["workflow", "history", "done"]);
    const eventIds = frames
      .filter((f) => f.event === "history")
      .flatMap((f) => (JSON.parse(f.data) as Array<{ eventId: string }>).map((h) => h.eventId));
    expect(eventIds).toEqual(Array.from({ length: 9 }, (_, i) => String(i + 1)));
    expect(JSON.parse(frames.find((f) => f.event === "workflow")!.data)).toMatchObject({ historyLength: 9 });
  });
});
