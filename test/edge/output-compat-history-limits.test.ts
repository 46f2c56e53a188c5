/**
 * What docs/output-compatibility.md says about history pages and reset that the other compat
 * tests do not pin: the page size (Output's default, our larger maximum), the pinned `rid`
 * winning over `?runId` (as in Output), and how reset finds a step by name (host/reset.ts:
 * Output's `workflow#step` activity names and our bare ones). Real workerd, D1 and RunStream DOs;
 * history is pushed as the host's relay pushes it.
 */
import type { temporal } from "@temporalio/proto";
import { beforeAll, describe, expect, it } from "vitest";
import { resetEventIdFor, StepNotCompletedError, StepNotFoundError } from "../../host/reset.ts";
import { call, errorCodeOf, seedCatalog, seedOrganization } from "./helpers.ts";
import { closeEvent, createRunningRun, finishedEvent, historyEvent, push, range } from "./stream-helpers.ts";

type Page = { workflow: { runId: string } | null; events: Array<{ eventId: string }>; runId: string; nextPageToken: string | null };

describe("GET /workflow/:id/history: page size and pinning", () => {
  let org: Awaited<ReturnType<typeof seedOrganization>>;
  const get = (path: string) => call(path, { headers: { authorization: `Bearer ${org.key}` } });
  const page = async (path: string) => {
    const res = await get(path);
    expect(res.status, path).toBe(200);
    return (await res.json()) as Page;
  };

  beforeAll(async () => {
    org = await seedOrganization();
    await seedCatalog();
  });

  it("pageSize defaults to 20 as in Output, and goes past Output's 50 up to 1000", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(
      workflowId,
      range(1, 60).map((n) => historyEvent(runId, n)),
    );
    const first = await page(`/workflow/${workflowId}/history`);
    expect(first.events.map((e) => Number(e.eventId))).toEqual(range(1, 20));
    expect(first.nextPageToken).not.toBeNull();
    const big = await page(`/workflow/${workflowId}/history?pageSize=1000`);
    expect(big.events.map((e) => Number(e.eventId))).toEqual(range(1, 60));
    expect(big.nextPageToken).toBeNull(); // the current end of a running run
    const res = await get(`/workflow/${workflowId}/history?pageSize=1001`);
    expect(res.status).toBe(400);
    expect(errorCodeOf(await res.json())).toBe("invalid_request");
  });

  it("on the pinned route the path's rid wins over ?runId, as in Output", async () => {
    const { workflowId, runId: first } = await createRunningRun(org.organizationId);
    await push(workflowId, [historyEvent(first, 1), closeEvent(first, 2), finishedEvent(first)]);
    // A second run of the workflow (what a reset records), with its own history.
    const second = crypto.randomUUID();
    await push(workflowId, [
      {
        sourceKey: `run:${second}:started`,
        type: "run.started",
        at: new Date().toISOString(),
        data: { runId: second, resetFromRunId: first },
      },
      ...range(1, 3).map((n) => historyEvent(second, n)),
    ]);
    expect((await page(`/workflow/${workflowId}/history`)).runId).toBe(second);
    const pinned = await page(`/workflow/${workflowId}/runs/${first}/history?runId=${second}`);
    expect(pinned.runId).toBe(first);
    expect(pinned.workflow?.runId).toBe(first);
    expect(pinned.events.map((e) => e.eventId)).toEqual(["1", "2"]);
    const other = await page(`/workflow/${workflowId}/runs/${second}/history?runId=${first}`);
    expect(other.runId).toBe(second);
    expect(other.events.map((e) => e.eventId)).toEqual(["1", "2", "3"]);
  });

  it("a pinned rid is a UUID in any letter case, as on /runs/:rid/status (Temporal's run ids are lower-case)", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, [historyEvent(runId, 1), closeEvent(runId, 2), finishedEvent(runId)]);
    const upper = runId.toUpperCase();
    const pinned = await page(`/workflow/${workflowId}/runs/${upper}/history`);
    expect(pinned.runId).toBe(runId);
    expect(pinned.events.map((e) => e.eventId)).toEqual(["1", "2"]);
    expect((await get(`/workflow/${workflowId}/runs/${upper}/status`)).status).toBe(200);
    // The trace log answers the upper-case form as it answers the run's own id.
    const [lower, upperTrace] = await Promise.all([
      get(`/workflow/${workflowId}/runs/${runId}/trace-log`),
      get(`/workflow/${workflowId}/runs/${upper}/trace-log`),
    ]);
    expect({ status: upperTrace.status, body: await upperTrace.json() }).toEqual({ status: lower.status, body: await lower.json() });
  });
});

describe("reset: which step a stepName names (host/reset.ts)", () => {
  type HistoryEvent = temporal.api.history.v1.IHistoryEvent;
  const scheduled = (id: number, name: string): HistoryEvent => ({
    eventId: id as never,
    activityTaskScheduledEventAttributes: { activityType: { name } },
  });
  const completed = (id: number, scheduledId: number): HistoryEvent => ({
    eventId: id as never,
    activityTaskCompletedEventAttributes: { scheduledEventId: scheduledId as never },
  });
  const taskCompleted = (id: number): HistoryEvent => ({ eventId: id as never, workflowTaskCompletedEventAttributes: {} });

  /** Two steps; `name` is how the activities are named (bare, or Output's `workflow#step`). */
  const history = (name: (step: string) => string) => [
    taskCompleted(4),
    scheduled(5, name("countWords")),
    completed(7, 5),
    taskCompleted(10),
    scheduled(11, name("shout")),
    completed(13, 11),
    taskCompleted(16),
  ];

  it("matches our bare activity names and the part after # of Output's workflow#step names", () => {
    for (const name of [(s: string) => s, (s: string) => `two_steps#${s}`]) {
      const events = history(name);
      expect(resetEventIdFor(events, "countWords")).toBe(10);
      expect(resetEventIdFor(events, "shout")).toBe(16);
    }
    // The full Output name names the step too.
    expect(
      resetEventIdFor(
        history((s) => `two_steps#${s}`),
        "two_steps#shout",
      ),
    ).toBe(16);
  });

  it("takes the step's last scheduling; an unknown step is StepNotFoundError, one not completed StepNotCompletedError", () => {
    const retried = [...history((s) => s), scheduled(17, "countWords"), completed(19, 17), taskCompleted(22)];
    expect(resetEventIdFor(retried, "countWords")).toBe(22);
    expect(() =>
      resetEventIdFor(
        history((s) => s),
        "noSuchStep",
      ),
    ).toThrow(StepNotFoundError);
    expect(() =>
      resetEventIdFor(
        history((s) => s),
        "two",
      ),
    ).toThrow(StepNotFoundError); // no partial names
    const pending = [...history((s) => s), scheduled(17, "countWords")];
    expect(() => resetEventIdFor(pending, "countWords")).toThrow(StepNotCompletedError);
    const notTakenIn = [taskCompleted(4), scheduled(5, "countWords"), completed(7, 5)];
    expect(() => resetEventIdFor(notTakenIn, "countWords")).toThrow(StepNotCompletedError);
  });
});
