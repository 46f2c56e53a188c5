/** The Workflow Runs API's event stream over a run's log, driven by pushed events (no host). */
import { abortAllDurableObjects } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { SignJWT } from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import { runStream } from "../../src/run-stream-client.ts";
import { runResetEvent } from "../../src/shared/run-events.ts";
import { interceptD1InPlace } from "../support/d1-intercept.ts";
import { readSse } from "../support/sse.ts";
import { call, seedCatalog, seedOrganization } from "./helpers.ts";
import {
  closeEvent,
  continuedAsNewEvents,
  createRunningRun,
  expectExactResume,
  finishedEvent,
  historyEvent,
  httpAttributeEvent,
  push,
  range,
  thinkingEvent,
} from "./stream-helpers.ts";

const stepEvent = (runId: string, attempt: number, state: "started" | "completed" | "failed") => ({
  sourceKey: `step:${runId}:1:${attempt}:${state}`,
  type: "step",
  at: new Date().toISOString(),
  data: { runId, activityId: "1", stepName: "countWords", attempt, state, ...(state === "failed" ? { error: "boom" } : {}) },
});

async function collect(res: Response) {
  const events: Array<{ event: string; id?: string; data: any }> = [];
  for await (const m of readSse(res.body!)) events.push({ event: m.event, id: m.id, data: JSON.parse(m.data) });
  return events;
}

describe("Workflow Runs API stream", () => {
  let token: string;
  let organizationId: string;
  beforeAll(async () => {
    await seedCatalog();
    ({ organizationId } = await seedOrganization());
    token = await new SignJWT({ org_id: organizationId })
      .setProtectedHeader({ alg: "HS256" })
      .setExpirationTime("5m")
      .sign(new TextEncoder().encode("edge-test-jwt-secret-at-least-32-bytes-long"));
  });

  const runIdOf = async (workflowId: string) =>
    (await env.DB.prepare("SELECT id FROM runs WHERE temporal_workflow_id = ?").bind(workflowId).first<{ id: string }>())!.id;
  const open = (runId: string, lastEventId?: string) =>
    call(`/api/v1/workflow-runs/${runId}/stream`, {
      headers: { authorization: `Bearer ${token}`, ...(lastEventId ? { "last-event-id": lastEventId } : {}) },
    });

  it("result carries the final detail (completedAt, status) even when D1 gets the run's end after the stream does", async () => {
    const { workflowId, runId } = await createRunningRun(organizationId);
    const id = await runIdOf(workflowId);
    await push(workflowId, [historyEvent(runId, 1)]);
    const collected = collect(await open(id));
    // The DO sends the end to its subscribers before its D1 write, which is slow today.
    const undo = interceptD1InPlace(env.DB, (c) => (c.kind === "batch" ? new Promise((r) => setTimeout(r, 300)) : undefined));
    try {
      await push(workflowId, [closeEvent(runId, 2), finishedEvent(runId)]);
      const result = (await collected).at(-1)!;
      expect(result.event).toBe("result");
      expect(result.data.workflowRun).toMatchObject({ id, status: "completed" });
      expect(result.data.workflowRun.completedAt).not.toBeNull();
    } finally {
      undo();
    }
  });

  it("a continue-as-new goes on in the stream: the next run's activity runs follow, and only the workflow's end sends result", async () => {
    const { workflowId, runId: first } = await createRunningRun(organizationId);
    const id = await runIdOf(workflowId);
    const second = crypto.randomUUID();
    await push(workflowId, [historyEvent(first, 1), stepEvent(first, 1, "started"), stepEvent(first, 1, "completed")]);
    const collected = collect(await open(id));
    await push(workflowId, [...continuedAsNewEvents(first, 2, second)]);
    await push(workflowId, [historyEvent(second, 1), stepEvent(second, 1, "started"), stepEvent(second, 1, "completed")]);
    await push(workflowId, [closeEvent(second, 2), finishedEvent(second)]);
    const events = await collected;
    expect(events.filter((e) => e.event === "error")).toEqual([]);
    const steps = events.filter((e) => e.event === "activity-run").map((e) => [e.data.content.activityRunId, e.data.content.status]);
    // Each run's attempt once, the second run's after the first's.
    expect(steps.map(([, status]) => status)).toEqual(["running", "completed", "running", "completed"]);
    expect(new Set(steps.map(([activityRunId]) => activityRunId)).size).toBe(2);
    expect(events.at(-1)).toMatchObject({ event: "result", data: { success: true, workflowRun: { id, status: "completed" } } });
    // A reconnect from the last entry's id follows the second run from there: nothing again but the result.
    const lastEntryId = events.filter((e) => e.id && e.event !== "result").at(-1)!.id!;
    expect((await collect(await open(id, lastEntryId))).map((e) => e.event)).toEqual(["result"]);
    // And one from the result's own id has it all: 204.
    expect((await open(id, events.at(-1)!.id)).status).toBe(204);
  });

  it("a client that lost the stream inside a run which has continued as new since resumes in that run: its last entries, then the next run's, each once", async () => {
    const { workflowId, runId: first } = await createRunningRun(organizationId);
    const id = await runIdOf(workflowId);
    const second = crypto.randomUUID();
    await push(workflowId, [historyEvent(first, 1), stepEvent(first, 1, "started")]);
    // The client sees the first run's attempt start, then loses the stream.
    let lastSeen: string | undefined;
    for await (const m of readSse((await open(id)).body!)) {
      if (m.event === "activity-run") {
        lastSeen = m.id;
        break;
      }
    }
    // Meanwhile the attempt ends, the run continues as new (D1's row follows the second run), which runs to the end.
    await push(workflowId, [stepEvent(first, 1, "completed"), ...continuedAsNewEvents(first, 2, second)]);
    await push(workflowId, [historyEvent(second, 1), stepEvent(second, 1, "started"), stepEvent(second, 1, "completed")]);
    await push(workflowId, [closeEvent(second, 2), finishedEvent(second)]);
    expect(await env.DB.prepare("SELECT temporal_run_id AS run FROM runs WHERE id = ?").bind(id).first("run")).toBe(second);

    const resumed = await collect(await open(id, lastSeen));
    const steps = resumed.filter((e) => e.event === "activity-run").map((e) => [e.data.content.activityRunId, e.data.content.status]);
    // The first run's end of the attempt the client saw start (not lost), then the second run's attempt.
    expect(steps.map(([, status]) => status)).toEqual(["completed", "running", "completed"]);
    expect(new Set(steps.map(([activityRunId]) => activityRunId)).size).toBe(2);
    expect(resumed.at(-1)).toMatchObject({ event: "result", data: { success: true, workflowRun: { id, status: "completed" } } });
    // Every id once, in order.
    const ids = resumed.filter((e) => e.id && e.event !== "result").map((e) => Number(e.id));
    expect(ids).toEqual([...ids].sort((a, b) => a - b));
    expect(new Set(ids).size).toBe(ids.length);
  });

  it("a client that lost the stream inside a run which a reset has replaced since resumes in that run: it gets what a client that never lost the stream got after that point", async () => {
    const { workflowId, runId } = await createRunningRun(organizationId);
    const id = await runIdOf(workflowId);
    await push(workflowId, [historyEvent(runId, 1), stepEvent(runId, 1, "started")]);
    const live = collect(await open(id));
    let lastSeen: string | undefined;
    for await (const m of readSse((await open(id)).body!)) {
      if (m.event === "activity-run") {
        lastSeen = m.id;
        break;
      }
    }
    // The attempt ends, then a reset replaces the run (as the reset route does), and the reset's run runs to the end.
    await push(workflowId, [stepEvent(runId, 1, "completed")]);
    const next = crypto.randomUUID();
    expect(await runStream(env, workflowId).holdForReset({ organizationId, workflowId, runUuid: id })).toMatchObject({ ok: true });
    await push(workflowId, [runResetEvent(next, runId)]);
    await push(workflowId, replacedEnd(runId));
    await push(workflowId, [historyEvent(next, 1), stepEvent(next, 2, "started"), closeEvent(next, 3), finishedEvent(next)]);
    const seen = (await live).filter((e) => e.event !== "ping");
    const resumed = (await collect(await open(id, lastSeen))).filter((e) => e.event !== "ping");
    expect(resumed.map((e) => [e.event, e.id, e.data])).toEqual(
      seen.slice(seen.findIndex((e) => e.id === lastSeen) + 1).map((e) => [e.event, e.id, e.data]),
    );
    expect(resumed.filter((e) => e.event === "activity-run").map((e) => e.data.content.status)).toEqual(["completed", "running"]);
  });

  it("aborting the Durable Object mid-stream loses nothing and duplicates nothing", async () => {
    const { workflowId, runId } = await createRunningRun(organizationId);
    const id = await runIdOf(workflowId);
    await push(workflowId, [stepEvent(runId, 1, "started"), historyEvent(runId, 1)]);
    const streams = await Promise.all(range(1, 5).map(() => open(id)));
    const collected = Promise.all(streams.map(collect));
    await push(workflowId, [stepEvent(runId, 1, "failed"), historyEvent(runId, 2)]);
    await abortAllDurableObjects();
    // Redelivery after the abort: some of it is already in the log.
    await push(workflowId, [stepEvent(runId, 1, "failed"), stepEvent(runId, 2, "started"), stepEvent(runId, 2, "completed")]);
    await push(workflowId, [closeEvent(runId, 3), finishedEvent(runId)]);
    for (const events of await collected) {
      const steps = events.filter((e) => e.event === "activity-run").map((e) => [e.data.content.attempt, e.data.content.status]);
      expect(steps).toEqual([
        [1, "running"],
        [1, "failed"],
        [2, "running"],
        [2, "completed"],
      ]);
      expect(events.filter((e) => e.event === "workflow-run").map((e) => e.data.content.status)).toEqual(["running", "completed"]);
      const ids = events.filter((e) => e.id).map((e) => Number(e.id));
      expect(new Set(ids).size).toBe(ids.length);
      expect(events.at(-1)!.event).toBe("result");
    }
    // Detail agrees: one activity run per attempt.
    const detail = (await (await call(`/api/v1/workflow-runs/${id}`, { headers: { authorization: `Bearer ${token}` } })).json()) as {
      activityRuns: Array<{ attempt: number; status: string }>;
    };
    expect(detail.activityRuns.map((a) => [a.attempt, a.status])).toEqual([
      [1, "failed"],
      [2, "completed"],
    ]);
  });

  it("an upper-case run id opens the same stream as the lower-case one (the detail route already takes it)", async () => {
    const { workflowId, runId } = await createRunningRun(organizationId);
    const id = await runIdOf(workflowId);
    await push(workflowId, [historyEvent(runId, 1), closeEvent(runId, 2), finishedEvent(runId)]);
    const upper = await open(id.toUpperCase());
    expect(upper.status).toBe(200);
    const events = await collect(upper);
    expect(events.map((e) => e.event)).toEqual((await collect(await open(id))).map((e) => e.event));
    expect(events.at(-1)!.event).toBe("result");
  });

  it("Last-Event-ID replays exactly what came after it; a bad one is 400", async () => {
    const { workflowId, runId } = await createRunningRun(organizationId);
    const id = await runIdOf(workflowId);
    await push(workflowId, [
      historyEvent(runId, 1),
      stepEvent(runId, 1, "started"),
      stepEvent(runId, 1, "completed"),
      closeEvent(runId, 2),
      finishedEvent(runId),
    ]);
    const all = await collect(await open(id));
    const withIds = all.filter((e) => e.id);
    const resumed = await collect(await open(id, withIds[1]!.id));
    expect(resumed.filter((e) => e.id).map((e) => e.id)).toEqual(withIds.slice(2).map((e) => e.id));
    expect(resumed.at(-1)!.event).toBe("result");
    expect((await open(id, "abc")).status).toBe(400);
  });

  it("the final result has an id: reconnecting after it is 204 (EventSource stops), reconnecting before it sends it again", async () => {
    for (const status of ["completed", "failed"] as const) {
      const { workflowId, runId } = await createRunningRun(organizationId);
      const id = await runIdOf(workflowId);
      await push(workflowId, [historyEvent(runId, 1), stepEvent(runId, 1, "started"), closeEvent(runId, 2), finishedEvent(runId, status)]);
      const all = await collect(await open(id));
      const end = all.at(-1)!;
      expect(end.event).toBe(status === "completed" ? "result" : "error");
      const lastEntryId = all.filter((e) => e.id && e.event !== end.event).at(-1)!.id!;
      expect(end.id).toBe(`${lastEntryId}.end`);
      // An EventSource that got the end reconnects with its id: nothing is left, so 204 ends it for good.
      const again = await open(id, end.id);
      expect(again.status).toBe(204);
      // One that lost the end (its last id is the entry before it) gets only the end again.
      const lostEnd = await collect(await open(id, lastEntryId));
      expect(lostEnd.filter((e) => e.event !== "ping").map((e) => [e.event, e.id])).toEqual([[end.event, end.id]]);
    }
  });

  it("steps, thinking and usage the host's journal redelivers after the run's end: reconnecting with the end's id is 204, never a second end; from before the end, the end once and last", async () => {
    const { workflowId, runId } = await createRunningRun(organizationId);
    const id = await runIdOf(workflowId);
    await push(workflowId, [historyEvent(runId, 1), stepEvent(runId, 1, "started"), closeEvent(runId, 2), finishedEvent(runId)]);
    const first = await collect(await open(id));
    const end = first.at(-1)!;
    expect(end.event).toBe("result");
    const lastEntryId = first.filter((e) => e.id && e.event !== "result").at(-1)!.id!;
    // After an outage the journal delivers what the step published, once the run's end is logged.
    await push(workflowId, [
      stepEvent(runId, 1, "completed"),
      thinkingEvent(runId, 1, "late", "1"),
      httpAttributeEvent(runId, 1, { activityId: "1", stepName: "countWords" }),
    ]);
    // A client that got the end has the run: EventSource stops.
    expect((await open(id, end.id)).status).toBe(204);
    // One that lost the end gets what came after its last entry and the end, once and last.
    const lostEnd = (await collect(await open(id, lastEntryId))).filter((e) => e.event !== "ping");
    expect(lostEnd.filter((e) => e.event === "result")).toHaveLength(1);
    expect(lostEnd.at(-1)!.event).toBe("result");
    expect((await open(id, lostEnd.at(-1)!.id)).status).toBe(204);
    // From the start: every entry once, one result, last.
    const all = (await collect(await open(id))).filter((e) => e.event !== "ping");
    expect(all.filter((e) => e.event === "result")).toHaveLength(1);
    expect(all.at(-1)!.event).toBe("result");
    expect(new Set(all.map((e) => e.id)).size).toBe(all.length);
    // A reset after it: the client that got the end follows the reset's run, as without late entries.
    const next = crypto.randomUUID();
    await env.DB.prepare("UPDATE runs SET temporal_run_id = ?, status = 'running' WHERE id = ?").bind(next, id).run();
    const res = await open(id, end.id);
    expect(res.status).toBe(200);
    await push(workflowId, [
      { sourceKey: `run:${next}:started`, type: "run.started", at: new Date().toISOString(), data: { runId: next } },
      stepEvent(next, 1, "started"),
    ]);
    const seen: string[] = [];
    for await (const m of readSse(res.body!)) {
      if (m.event === "ping") continue;
      seen.push(m.event);
      if (m.event === "activity-run") break;
    }
    expect(seen).toEqual(["workflow-run", "activity-run"]);
  });

  it("a run reset after a client saw its end shows the new run to that client, not 204", async () => {
    const { workflowId, runId } = await createRunningRun(organizationId);
    const id = await runIdOf(workflowId);
    await push(workflowId, [historyEvent(runId, 1), closeEvent(runId, 2), finishedEvent(runId)]);
    const end = (await collect(await open(id))).at(-1)!;
    expect(end.id).toMatch(/^\d+\.end$/);
    const next = crypto.randomUUID();
    await env.DB.prepare("UPDATE runs SET temporal_run_id = ?, status = 'running' WHERE id = ?").bind(next, id).run();
    const res = await open(id, end.id);
    expect(res.status).toBe(200);
    await push(workflowId, [
      { sourceKey: `run:${next}:started`, type: "run.started", at: new Date().toISOString(), data: { runId: next } },
      stepEvent(next, 1, "started"),
    ]);
    const reader = readSse(res.body!);
    const seen: string[] = [];
    for await (const m of reader) {
      if (m.event === "ping") continue;
      seen.push(m.event);
      if (m.event === "activity-run") break;
    }
    expect(seen).toEqual(["workflow-run", "activity-run"]);
  });

  /** A stream of the run that keeps its events until `result` or `error`. */
  const following = (res: Response) => {
    const events: Array<{ event: string; data: any }> = [];
    const done = (async () => {
      for await (const m of readSse(res.body!)) {
        if (m.event === "ping") continue;
        events.push({ event: m.event, data: JSON.parse(m.data) });
        if (m.event === "result" || m.event === "error") break;
      }
    })();
    return { events, done };
  };
  const replacedEnd = (runId: string) => [
    historyEvent(runId, 2, "EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED"),
    { ...finishedEvent(runId, "terminated"), data: { runId, status: "terminated", error: "reset" } },
  ];

  for (const order of ["the reset's run recorded first", "the replaced run's end first, while the reset is pending"] as const) {
    it(`a reset while a client streams (${order}): no error for the replaced run; the stream goes on with the reset's run to its result`, async () => {
      const { workflowId, runId } = await createRunningRun(organizationId);
      const id = await runIdOf(workflowId);
      await push(workflowId, [historyEvent(runId, 1), stepEvent(runId, 1, "started")]);
      const stream = following(await open(id));
      const next = crypto.randomUUID();
      // As the reset route does: the run's DO marks the reset pending before the host is asked.
      expect(await runStream(env, workflowId).holdForReset({ organizationId, workflowId, runUuid: id })).toMatchObject({ ok: true });
      const reset = [runResetEvent(next, runId)];
      for (const batch of order === "the reset's run recorded first" ? [reset, replacedEnd(runId)] : [replacedEnd(runId), reset])
        await push(workflowId, batch);
      await push(workflowId, [historyEvent(next, 1), stepEvent(next, 2, "started"), closeEvent(next, 3), finishedEvent(next)]);
      await stream.done;
      expect(stream.events.map((e) => e.event)).not.toContain("error");
      expect(stream.events.at(-1)).toMatchObject({ event: "result", data: { success: true } });
    });
  }

  it("a run that ends while a reset of it is pending, which the host then refuses: its own end, once the reset is refused", async () => {
    const { workflowId, runId } = await createRunningRun(organizationId);
    const id = await runIdOf(workflowId);
    await push(workflowId, [historyEvent(runId, 1)]);
    const stream = following(await open(id));
    const stub = runStream(env, workflowId);
    expect(await stub.holdForReset({ organizationId, workflowId, runUuid: id })).toMatchObject({ ok: true });
    await push(workflowId, [closeEvent(runId, 2), finishedEvent(runId)]);
    await new Promise((r) => setTimeout(r, 300));
    expect(stream.events.map((e) => e.event)).not.toContain("result"); // held while the reset may replace the run
    await stub.undoResetHold(workflowId);
    await stream.done;
    expect(stream.events.at(-1)).toMatchObject({ event: "result", data: { success: true } });
  });

  it("a Last-Event-ID that is neither <n> nor <n>.end is 400", async () => {
    const { workflowId, runId } = await createRunningRun(organizationId);
    const id = await runIdOf(workflowId);
    await push(workflowId, [historyEvent(runId, 1), closeEvent(runId, 2), finishedEvent(runId)]);
    for (const bad of ["3.END", "3.end.end", ".end", "3.5", "end"]) {
      const res = await open(id, bad);
      expect(res.status, bad).toBe(400);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe("invalid_request");
    }
  });

  it("resume is exact from every event id, thinking included (security: no duplicates)", async () => {
    const { workflowId, runId } = await createRunningRun(organizationId);
    const id = await runIdOf(workflowId);
    await push(workflowId, [
      historyEvent(runId, 1),
      stepEvent(runId, 1, "started"),
      thinkingEvent(runId, 1, "hmm", "1"),
      thinkingEvent(runId, 2, "ok", "1"),
    ]);
    await push(workflowId, [stepEvent(runId, 1, "completed"), closeEvent(runId, 2), finishedEvent(runId)]);
    const { frames } = await expectExactResume((lastEventId) => open(id, lastEventId), ["ping", "result", "error"]);
    expect(frames.filter((f) => f.id).map((f) => f.event)).toEqual([
      "workflow-run",
      "activity-run",
      "thinking",
      "thinking",
      "activity-run",
      "workflow-run",
      "result",
    ]);
  });
});
