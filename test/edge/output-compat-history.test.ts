/**
 * History JSON, trace log and reset at the edge (workerd, real D1 and RunStream DOs; history is
 * pushed as the host's relay pushes it). Happy paths, then bad input, then other tenants; then
 * what docs/output-compatibility.md says about page sizes, pinned run ids and how reset finds a
 * step by name (host/reset.ts: Output's `workflow#step` activity names and our bare ones).
 * test/e2e/output-compat-history.test.ts drives the same routes against real Temporal runs.
 */

import { env } from "cloudflare:workers";
import type { temporal } from "@temporalio/proto";
import { beforeAll, describe, expect, it } from "vitest";
import { HISTORY_PAGE_MAX_CHARS } from "../../durable-objects/run-stream/constants.ts";
import { HISTORY_CATCH_UP_MS } from "../../durable-objects/run-stream/trace-reader.ts";
import { resetEventIdFor, StepNotCompletedError, StepNotFoundError } from "../../host/reset.ts";
import { encodePageToken } from "../../src/shared/output-history.ts";
import { runResetEvent } from "../../src/shared/run-events.ts";
import { attributeEvent, call, errorCodeOf, seedCatalog, seedOrganization } from "./helpers.ts";
import {
  closeEvent,
  continuedAsNewEvents,
  createRunningRun,
  finishedEvent,
  historyEvent,
  push,
  range,
  runAcceptedWhileHostIsDown,
} from "./stream-helpers.ts";

type Page = {
  workflow: Record<string, unknown> | null;
  events: Array<Record<string, unknown>>;
  runId: string | null;
  nextPageToken: string | null;
};

/** One Temporal history event as the relay pushes it (the stored form the edge translates). */
function stored(
  runId: string,
  eventId: number,
  type: string,
  attributes: Record<string, unknown> = {},
  payloads?: Record<string, unknown>,
) {
  return {
    sourceKey: `history:${runId}:${eventId}`,
    type: "history",
    at: new Date(Date.UTC(2026, 0, 1, 0, 0, eventId)).toISOString(),
    data: {
      runId,
      event: {
        eventId: String(eventId),
        eventTime: new Date(Date.UTC(2026, 0, 1, 0, 0, eventId)).toISOString(),
        eventType: `EVENT_TYPE_${type}`,
        attributes,
        ...(payloads ? { payloads } : {}),
      },
    },
  };
}

/** two_steps up to the end of its first step (8 events), as Temporal records it. */
function firstStep(runId: string) {
  return [
    stored(
      runId,
      1,
      "WORKFLOW_EXECUTION_STARTED",
      { workflowType: { name: "two_steps" }, taskQueue: { name: "outrider" }, input: {} },
      { input: [{ text: "a b c" }] },
    ),
    stored(runId, 2, "WORKFLOW_TASK_SCHEDULED"),
    stored(runId, 3, "WORKFLOW_TASK_STARTED"),
    stored(runId, 4, "WORKFLOW_TASK_COMPLETED"),
    stored(runId, 5, "ACTIVITY_TASK_SCHEDULED", { activityId: "1", activityType: { name: "countWords" }, input: {} }, { input: ["a b c"] }),
    stored(runId, 6, "ACTIVITY_TASK_STARTED", { scheduledEventId: "5", attempt: 1 }),
    stored(
      runId,
      7,
      "ACTIVITY_TASK_COMPLETED",
      { scheduledEventId: "5", startedEventId: "6", result: {} },
      { result: { words: 3, text: "a b c" } },
    ),
    stored(runId, 8, "WORKFLOW_TASK_SCHEDULED"),
  ];
}

function secondStepFailing(runId: string) {
  return [
    stored(runId, 9, "WORKFLOW_TASK_STARTED"),
    stored(runId, 10, "WORKFLOW_TASK_COMPLETED"),
    stored(runId, 11, "ACTIVITY_TASK_SCHEDULED", { activityId: "2", activityType: { name: "shout" }, input: {} }, { input: ["a b c"] }),
    stored(runId, 12, "ACTIVITY_TASK_STARTED", { scheduledEventId: "11", attempt: 2 }),
    stored(runId, 13, "ACTIVITY_TASK_FAILED", {
      scheduledEventId: "11",
      failure: { message: "too loud", stackTrace: "at shout", applicationFailureInfo: { type: "Loud" } },
    }),
    stored(runId, 14, "WORKFLOW_TASK_SCHEDULED"),
    stored(runId, 15, "WORKFLOW_TASK_STARTED"),
    stored(runId, 16, "WORKFLOW_TASK_COMPLETED"),
    stored(runId, 17, "WORKFLOW_EXECUTION_FAILED", { failure: { message: "too loud" } }),
  ];
}

const finished = (runId: string, status: string, error: string | null = null) => ({
  sourceKey: `run:${runId}:finished`,
  type: "run.finished",
  at: new Date().toISOString(),
  data: { runId, status, output: null, error },
});

const llmUsage = (runId: string) =>
  attributeEvent(
    runId,
    { activityId: "2", stepName: "shout", attempt: 2 },
    {
      type: "llm:usage",
      modelId: "gpt-test",
      total: 0.003,
      tokensUsed: 30,
      usage: [
        { type: "input", ppm: 100, amount: 10, total: 0.001 },
        { type: "output", ppm: 100, amount: 20, total: 0.002 },
      ],
    },
  );

describe("GET /workflow/:id/history (Output's shape)", () => {
  let org: Awaited<ReturnType<typeof seedOrganization>>;
  const get = (path: string, key = org.key) => call(path, { headers: { authorization: `Bearer ${key}` } });
  const page = async (path: string) => {
    const res = await get(path);
    expect(res.status, path).toBe(200);
    return (await res.json()) as Page;
  };

  beforeAll(async () => {
    org = await seedOrganization();
    await seedCatalog();
  });

  it("first page: the workflow summary, events in Output's JSON form, payload fields left out", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, firstStep(runId));
    const first = await page(`/workflow/${workflowId}/history`);
    expect(first.workflow).toEqual({
      workflowId,
      runId,
      status: "running",
      startTime: "2026-01-01T00:00:01.000Z",
      closeTime: null,
      historyLength: 8,
      taskQueue: "outrider",
      closed: false,
    });
    expect(first.runId).toBe(runId);
    expect(first.events).toHaveLength(8);
    expect(first.nextPageToken).toBeNull(); // the current end of a running run
    expect(first.events[4]).toEqual({
      eventId: "5",
      eventType: 10,
      eventTypeName: "ACTIVITY_TASK_SCHEDULED",
      eventTime: "2026-01-01T00:00:05.000Z",
      activityTaskScheduledEventAttributes: { activityId: "1", activityType: { name: "countWords" }, stepName: "countWords" },
    });
    expect(first.events[6]).toEqual(
      expect.objectContaining({
        eventTypeName: "ACTIVITY_TASK_COMPLETED",
        activityTaskCompletedEventAttributes: { scheduledEventId: "5", startedEventId: "6" },
      }),
    );
  });

  it("includePayloads=true decodes inputs and results in place, as arrays, and trims failures", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, [...firstStep(runId), ...secondStepFailing(runId)]);
    const { events } = await page(`/workflow/${workflowId}/history?includePayloads=true&pageSize=50`);
    expect(events[0]!.workflowExecutionStartedEventAttributes).toMatchObject({ input: [{ text: "a b c" }] });
    expect(events[4]!.activityTaskScheduledEventAttributes).toMatchObject({ input: ["a b c"] });
    expect(events[6]!.activityTaskCompletedEventAttributes).toMatchObject({ result: [{ words: 3, text: "a b c" }] });
    expect(events[12]!.activityTaskFailedEventAttributes).toEqual({
      scheduledEventId: "11",
      failure: { message: "too loud", stackTrace: "at shout", type: "Loud" },
    });
    const plain = await page(`/workflow/${workflowId}/history?pageSize=50`);
    expect(plain.events[12]!.activityTaskFailedEventAttributes).toEqual({ scheduledEventId: "11" });
    expect(JSON.stringify(plain.events)).not.toContain("a b c");
  });

  it("a page walk like Output's CLI: base64 tokens, the summary only on page one, null at the tip", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, firstStep(runId));
    const pages: Page[] = [];
    let token: string | null = null;
    do {
      const query: string = token ? `&runId=${runId}&pageToken=${encodeURIComponent(token)}` : "";
      const p = await page(`/workflow/${workflowId}/history?pageSize=3${query}`);
      pages.push(p);
      token = p.nextPageToken;
      if (token) expect(token).toMatch(/^[A-Za-z0-9+/]+={0,2}$/);
      expect(pages.length).toBeLessThan(10);
    } while (token);
    expect(pages.map((p) => p.events.map((e) => Number(e.eventId)))).toEqual([
      [1, 2, 3],
      [4, 5, 6],
      [7, 8],
    ]);
    expect(pages.map((p) => p.workflow === null)).toEqual([false, true, true]);
    // The same walk on the pinned route; a token works there without ?runId.
    const pinned = await page(`/workflow/${workflowId}/runs/${runId}/history?pageSize=5`);
    const next = await page(
      `/workflow/${workflowId}/runs/${runId}/history?pageSize=5&pageToken=${encodeURIComponent(pinned.nextPageToken!)}`,
    );
    expect([...pinned.events, ...next.events].map((e) => e.eventId)).toEqual(["1", "2", "3", "4", "5", "6", "7", "8"]);
  });

  it("long-poll: waits for the next events and returns them with the summary; on timeout events [] and the same token", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, firstStep(runId));
    const tip = encodePageToken({ runId, afterEventId: 8 });
    const quiet = await page(`/workflow/${workflowId}/history?runId=${runId}&pageToken=${encodeURIComponent(tip)}&longPollTimeoutMs=300`);
    expect(quiet).toEqual({
      workflow: expect.objectContaining({ status: "running", closed: false }),
      events: [],
      runId,
      nextPageToken: tip,
    });

    const waiting = page(`/workflow/${workflowId}/history?runId=${runId}&pageToken=${encodeURIComponent(tip)}&longPollTimeoutMs=10000`);
    await new Promise((r) => setTimeout(r, 400));
    await push(workflowId, [...secondStepFailing(runId), finished(runId, "failed", "too loud")]);
    const woke = await waiting;
    expect(woke.events.map((e) => Number(e.eventId))).toEqual([9, 10, 11, 12, 13, 14, 15, 16, 17]);
    expect(woke.workflow).toMatchObject({ status: "failed", closed: true, closeTime: "2026-01-01T00:00:17.000Z" });
    expect(woke.nextPageToken).toBeNull(); // the run's history is complete

    // Terminal detection as Output's monitor does it: `workflow.status` on a long-poll.
    const after = await page(
      `/workflow/${workflowId}/history?runId=${runId}&pageToken=${encodeURIComponent(encodePageToken({ runId, afterEventId: 17 }))}&longPollTimeoutMs=5000`,
    );
    expect(after).toMatchObject({ events: [], nextPageToken: null, workflow: { status: "failed" } });
    // `wait=true` (another Output CLI version's long-poll) replays from the token that fetched the tip, de-duped by the client.
    const replay = await page(`/workflow/${workflowId}/history?runId=${runId}&pageToken=${encodeURIComponent(tip)}&wait=true`);
    expect(replay.events.map((e) => Number(e.eventId))).toEqual([9, 10, 11, 12, 13, 14, 15, 16, 17]);
    expect(replay.workflow).toMatchObject({ status: "failed" });
  });

  it("the outcome known before the last history events: the page waits for them, so its summary and its events agree (Output's describe, then the history)", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    const history = secondStepFailing(runId);
    const close = history.pop()!;
    await push(workflowId, [...firstStep(runId), ...history, finished(runId, "failed", "too loud")]);
    const reading = page(`/workflow/${workflowId}/history?pageSize=100`);
    await new Promise((r) => setTimeout(r, 300));
    await push(workflowId, [close]);
    const first = await reading;
    expect(first.workflow).toMatchObject({ status: "failed", closed: true, historyLength: 8 + history.length + 1 });
    expect(first.events.at(-1)).toMatchObject({ eventId: close.data.event.eventId });
    expect(first.nextPageToken).toBeNull();
  });

  it("a summary never says the run ended while its history lacks the closing event (the events never came within the wait)", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    const history = secondStepFailing(runId);
    history.pop();
    await push(workflowId, [...firstStep(runId), ...history, finished(runId, "failed", "too loud")]);
    const first = await page(`/workflow/${workflowId}/history`);
    expect(first.workflow).toMatchObject({ status: "running", closed: false, closeTime: null });
  });

  it("bad input: 400 invalid_request for the query, 400 invalid_page_token for a token not ours, 404 for an unknown run", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, firstStep(runId));
    const expectError = async (path: string, status: number, code: string) => {
      const res = await get(path);
      expect(res.status, path).toBe(status);
      expect(errorCodeOf(await res.json()), path).toBe(code);
    };
    for (const q of [
      "pageSize=0",
      "pageSize=1001",
      "pageSize=abc",
      // Number() would read these as 16, 100, 5, 5 and 5: only decimal digits are a number here.
      "pageSize=0x10",
      "pageSize=1e2",
      "pageSize=%205",
      "pageSize=%2B5",
      "pageSize=5.0",
      "longPollTimeoutMs=1e3",
      "includePayloads=yes",
      "longPollTimeoutMs=0",
      "longPollTimeoutMs=-5",
      "pageToken=%21%21",
      `pageToken=${"A".repeat(4100)}`,
      "runId=not-a-uuid",
      // A repeated parameter (Output's Express reads it as a list, which its validation refuses).
      "pageSize=5&pageSize=500",
      "includePayloads=false&includePayloads=true",
    ]) {
      await expectError(`/workflow/${workflowId}/history?${q}`, 400, "invalid_request");
    }
    await expectError(`/workflow/${workflowId}/history?pageToken=Zm9vYmFy`, 400, "invalid_page_token");
    const otherRunsToken = encodeURIComponent(encodePageToken({ runId: crypto.randomUUID(), afterEventId: 2 }));
    await expectError(`/workflow/${workflowId}/history?runId=${runId}&pageToken=${otherRunsToken}`, 400, "invalid_page_token");
    // A token for a run this workflow never had (another workflow's, or forged) is the token's fault: 400, as Output's CLI expects of a stale cursor.
    await expectError(`/workflow/${workflowId}/history?pageToken=${otherRunsToken}`, 400, "invalid_page_token");
    await expectError(`/workflow/${workflowId}/history?pageToken=${encodeURIComponent(btoa("o1:zzz:0"))}`, 400, "invalid_page_token");
    await expectError(`/workflow/${workflowId}/runs/not-a-uuid/history`, 400, "invalid_request");
    await expectError(`/workflow/${workflowId}/history?runId=${crypto.randomUUID()}`, 404, "run_not_found");
    await expectError(`/workflow/${workflowId}/runs/${crypto.randomUUID()}/history`, 404, "run_not_found");
    await expectError(`/workflow/two_steps-${crypto.randomUUID()}/history`, 404, "run_not_found");
    // An empty pageToken counts as absent, as in Output.
    expect((await page(`/workflow/${workflowId}/history?pageToken=`)).events).toHaveLength(8);
  });

  it("security: another organization gets 404; a token naming another workflow's run reads nothing of it (400 invalid_page_token)", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, firstStep(runId));
    const other = await seedOrganization("Other org");
    for (const path of [
      `/workflow/${workflowId}/history`,
      `/workflow/${workflowId}/runs/${runId}/history`,
      `/workflow/${workflowId}/runs/${runId}/trace-log`,
    ]) {
      const res = await get(path, other.key);
      expect(res.status, path).toBe(404);
      expect(await res.text()).not.toContain(runId);
    }
    // The other organization's own run, asked with a token of ours: its DO does not know our run.
    const theirs = await createRunningRun(other.organizationId);
    await push(theirs.workflowId, firstStep(theirs.runId));
    const res = await get(
      `/workflow/${theirs.workflowId}/history?pageToken=${encodeURIComponent(encodePageToken({ runId, afterEventId: 0 }))}`,
      other.key,
    );
    expect(res.status).toBe(400);
    expect(errorCodeOf(JSON.parse(await res.clone().text()))).toBe("invalid_page_token");
    expect(await res.text()).not.toContain("countWords");
  });

  it("security: the host's memo (a run's sealed env overrides) in an event stored before the host left it out is never answered", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    const sealed = "e2.abcd1234:d3JhcHBlZA.c2VhbGVk"; // the shape of a sealed value
    const events = firstStep(runId);
    (events[0]!.data.event.attributes as Record<string, unknown>).memo = {
      fields: { outriderEnvs: { metadata: { encoding: "anNvbi9wbGFpbg==" }, data: sealed } },
    };
    await push(workflowId, events);
    for (const payloads of ["false", "true"]) {
      const res = await get(`/workflow/${workflowId}/history?includePayloads=${payloads}`);
      expect(res.status).toBe(200);
      const text = await res.text();
      expect(text, payloads).toContain("workflowExecutionStartedEventAttributes");
      expect(text, payloads).not.toContain("memo");
      expect(text, payloads).not.toContain(sealed);
    }
  });

  it("after a continue-as-new, the next run's history is a page of its own (running, no events yet), not 404, before the relay brings its first event", async () => {
    const { workflowId, runId: first } = await createRunningRun(org.organizationId);
    const next = crypto.randomUUID();
    await push(workflowId, [historyEvent(first, 1), ...continuedAsNewEvents(first, 2, next)]);
    // What Output's CLI asks next (monitor_stream: the hand-over's newRunId, then its history).
    for (const path of [`/workflow/${workflowId}/history?runId=${next}&pageSize=50`, `/workflow/${workflowId}/runs/${next}/history`]) {
      const answered = await page(path);
      expect(answered.events, path).toEqual([]);
      expect(answered.workflow, path).toMatchObject({ runId: next, status: "running" });
    }
    // Unpinned, the workflow's current run is the next one.
    expect((await page(`/workflow/${workflowId}/history`)).workflow).toMatchObject({ runId: next, status: "running" });
    // A run id nothing named is still 404.
    expect((await get(`/workflow/${workflowId}/history?runId=${crypto.randomUUID()}`)).status).toBe(404);
  }, 15_000); // each first page waits up to FIRST_EVENTS_WAIT_MS (2 s) for events that never come here

  it("a run Temporal has not started yet, or never will (its start refused), still has Output's summary on the first page and on a long-poll: the monitor stops on it", async () => {
    // Output's CLI ends `workflow monitor` / `start --monitor` only on the page's `workflow.status`
    // (sdk/cli/src/services/monitor_stream.ts streamWorkflowUpdates; services/workflow_history.ts
    // fetchPages takes `data.workflow`), and `history` prints it in its header; Output's server
    // describes the run on every first page and long-poll (api/src/clients/temporal/workflow/get_history.js).
    // A null summary left a run refused before it started polled forever.
    const { workflowId, reply, refuseForGood, restore } = await runAcceptedWhileHostIsDown(org.organizationId);
    try {
      expect(reply).toMatchObject({ ok: true, started: { runId: null, status: "scheduled" } });
      const pages = async () => [
        await page(`/workflow/${workflowId}/history?pageSize=50&includePayloads=false`),
        await page(`/workflow/${workflowId}/history?pageSize=50&includePayloads=false&longPollTimeoutMs=50`),
      ];
      for (const first of await pages()) {
        expect(first).toEqual({
          workflow: {
            workflowId,
            runId: null,
            status: "scheduled",
            startTime: null,
            closeTime: null,
            historyLength: 0,
            taskQueue: "",
            closed: false,
          },
          events: [],
          runId: null,
          nextPageToken: null,
        });
      }
      await refuseForGood();
      for (const first of await pages()) {
        expect(first.workflow).toMatchObject({
          workflowId,
          runId: null,
          status: "failed",
          startTime: null,
          historyLength: 0,
          closed: true,
        });
        expect(Date.parse(first.workflow!.closeTime as string)).not.toBeNaN();
        expect([first.events, first.nextPageToken]).toEqual([[], null]);
      }
    } finally {
      restore();
    }
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

  it("a page with payloads ends at HISTORY_PAGE_MAX_CHARS of events with a nextPageToken, even at pageSize=1000 on a finished run; the walk gets every event once", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    const bulky = (n: number) => {
      const event = historyEvent(runId, n);
      event.data.event.payloads = { result: { text: "x".repeat(1_500_000) } } as never;
      return event;
    };
    await push(workflowId, [historyEvent(runId, 1), ...range(2, 7).map(bulky)]);
    await push(workflowId, [closeEvent(runId, 8), finishedEvent(runId)]);

    const seen: number[] = [];
    let path = `/workflow/${workflowId}/history?pageSize=1000&includePayloads=true`;
    let pages = 0;
    for (;;) {
      const res = await get(path);
      expect(res.status).toBe(200);
      const text = await res.text();
      const body = JSON.parse(text) as Page;
      pages++;
      expect(body.events.length, `page ${pages}`).toBeGreaterThan(0);
      expect(JSON.stringify(body.events).length, `page ${pages}`).toBeLessThanOrEqual(HISTORY_PAGE_MAX_CHARS);
      seen.push(...body.events.map((e) => Number(e.eventId)));
      if (!body.nextPageToken) break;
      path = `/workflow/${workflowId}/history?pageSize=1000&includePayloads=true&pageToken=${encodeURIComponent(body.nextPageToken)}`;
    }
    expect(pages).toBe(3);
    expect(seen).toEqual(range(1, 8));
    // Without payloads the same events are small: one page.
    const lean = await page(`/workflow/${workflowId}/history?pageSize=1000`);
    expect(lean.events.map((e) => Number(e.eventId))).toEqual(range(1, 8));
    expect(lean.nextPageToken).toBeNull();
  });

  it("on the pinned route the path's rid wins over ?runId, as in Output", async () => {
    const { workflowId, runId: first } = await createRunningRun(org.organizationId);
    await push(workflowId, [historyEvent(first, 1), closeEvent(first, 2), finishedEvent(first)]);
    // A second run of the workflow (what a reset records), with its own history.
    const second = crypto.randomUUID();
    await push(workflowId, [runResetEvent(second, first), ...range(1, 3).map((n) => historyEvent(second, n))]);
    expect((await page(`/workflow/${workflowId}/history`)).runId).toBe(second);
    const pinned = await page(`/workflow/${workflowId}/runs/${first}/history?runId=${second}`);
    expect(pinned.runId).toBe(first);
    expect(pinned.workflow?.runId).toBe(first);
    expect(pinned.events.map((e) => e.eventId)).toEqual(["1", "2"]);
    const other = await page(`/workflow/${workflowId}/runs/${second}/history?runId=${first}`);
    expect(other.runId).toBe(second);
    expect(other.events.map((e) => e.eventId)).toEqual(["1", "2", "3"]);
  });

  it("a pinned rid or ?runId= is a UUID in any letter case, as on /runs/:rid/status (Temporal's run ids are lower-case)", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, [historyEvent(runId, 1), closeEvent(runId, 2), finishedEvent(runId)]);
    const upper = runId.toUpperCase();
    const pinned = await page(`/workflow/${workflowId}/runs/${upper}/history`);
    expect(pinned.runId).toBe(runId);
    expect(pinned.events.map((e) => e.eventId)).toEqual(["1", "2"]);
    expect((await get(`/workflow/${workflowId}/runs/${upper}/status`)).status).toBe(200);
    // `?runId=` too, alone and with a page token of the run's own (lower-case) id.
    const queried = await page(`/workflow/${workflowId}/history?runId=${upper}&pageSize=1`);
    expect([queried.runId, queried.events.map((e) => e.eventId)]).toEqual([runId, ["1"]]);
    const next = await page(`/workflow/${workflowId}/history?runId=${upper}&pageToken=${encodeURIComponent(queried.nextPageToken!)}`);
    expect(next.events.map((e) => e.eventId)).toEqual(["2"]);
    // The trace log answers the upper-case form as it answers the run's own id.
    const [lower, upperTrace] = await Promise.all([
      get(`/workflow/${workflowId}/runs/${runId}/trace-log`),
      get(`/workflow/${workflowId}/runs/${upper}/trace-log`),
    ]);
    expect({ status: upperTrace.status, body: await upperTrace.json() }).toEqual({ status: lower.status, body: await lower.json() });
  });

  it("a rid that is not a UUID is one and the same 400 on every pinned route, before any read", async () => {
    const { workflowId } = await createRunningRun(org.organizationId);
    const base = `/workflow/${workflowId}/runs/not-a-uuid`;
    const answers = await Promise.all(
      [
        get(`${base}/history`),
        get(`${base}/history/stream`),
        get(`${base}/status`),
        get(`${base}/result`),
        get(`${base}/input`),
        get(`${base}/trace-log`),
        get(`${base}/trace-attributes`),
        call(`${base}/stop`, { method: "PATCH", headers: { authorization: `Bearer ${org.key}` } }),
        call(`${base}/reset`, {
          method: "POST",
          headers: { authorization: `Bearer ${org.key}`, "content-type": "application/json" },
          body: JSON.stringify({ stepName: "shout" }),
        }),
      ].map(async (pending) => {
        const res = await pending;
        const { requestId: _differs, ...body } = (await res.json()) as { requestId?: string };
        return { status: res.status, body };
      }),
    );
    expect(answers[0]).toMatchObject({
      status: 400,
      body: { error: "ValidationError", code: "invalid_request", message: "invalid run id: expected a UUID" },
    });
    for (const answer of answers) expect(answer).toEqual(answers[0]);
  });
});

describe("GET /workflow/:id/trace-log (Output's trace format)", () => {
  let org: Awaited<ReturnType<typeof seedOrganization>>;
  const get = (path: string) => call(path, { headers: { authorization: `Bearer ${org.key}` } });
  beforeAll(async () => {
    org = await seedOrganization();
    await seedCatalog();
  });

  it("424 run_not_finished while the run goes on, then {source: remote, runId, data} with the node tree", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, [...firstStep(runId), llmUsage(runId)]);
    const running = await get(`/workflow/${workflowId}/trace-log`);
    expect(running.status).toBe(424);
    expect(running.headers.get("retry-after")).toBe("2");
    expect(errorCodeOf(await running.json())).toBe("run_not_finished");
    expect((await get(`/workflow/${workflowId}/runs/${runId}/trace-log`)).status).toBe(424);

    await push(workflowId, [...secondStepFailing(runId), finished(runId, "failed", "too loud")]);
    for (const path of [`/workflow/${workflowId}/trace-log`, `/workflow/${workflowId}/runs/${runId}/trace-log`]) {
      const res = await get(path);
      expect(res.status, path).toBe(200);
      const body = (await res.json()) as {
        source: string;
        runId: string;
        data: Record<string, unknown> & { children: Array<Record<string, unknown> & { children: Array<Record<string, unknown>> }> };
      };
      expect(body.source).toBe("remote");
      expect(body.runId).toBe(runId);
      expect(body.data).toMatchObject({
        kind: "workflow",
        name: "two_steps",
        phase: "error",
        status: "failed",
        input: { text: "a b c" },
        error: { message: "too loud" },
        startedAt: Date.UTC(2026, 0, 1, 0, 0, 1),
        endedAt: Date.UTC(2026, 0, 1, 0, 0, 17),
      });
      expect(body.data.children.map((s) => [s.kind, s.name, s.phase, s.status, s.input, s.output, s.error])).toEqual([
        ["step", "countWords", "end", "completed", "a b c", { words: 3, text: "a b c" }, null],
        ["step", "shout", "error", "failed", "a b c", null, { message: "too loud" }],
      ]);
      expect(body.data.children[1]!.children).toEqual([
        expect.objectContaining({
          kind: "llm",
          name: "gpt-test",
          attributes: { "llm:usage": expect.objectContaining({ modelId: "gpt-test", total: 0.003 }) },
        }),
      ]);
    }
  });

  it("the outcome known before the last history events (a blocking run's answer): the read waits for them and answers the trace, not 424", async () => {
    for (const pinned of [false, true]) {
      const { workflowId, runId } = await createRunningRun(org.organizationId);
      const history = secondStepFailing(runId);
      const close = history.pop()!;
      await push(workflowId, [...firstStep(runId), ...history, finished(runId, "failed", "too loud")]);
      const path = pinned ? `/workflow/${workflowId}/runs/${runId}/trace-log` : `/workflow/${workflowId}/trace-log`;
      const reading = get(path);
      await new Promise((r) => setTimeout(r, 300));
      await push(workflowId, [close]);
      const res = await reading;
      expect(res.status, path).toBe(200);
      expect(((await res.json()) as { runId: string; data: { status: string } }).data.status).toBe("failed");
    }
  });

  it("a run that ended with no outcome in its log (its start given up) is 404 trace_not_available at once: nothing is on its way to wait for", async () => {
    const workflowId = `two_steps-${crypto.randomUUID()}`;
    const wf = await env.DB.prepare("SELECT id FROM workflows WHERE name = 'two_steps' AND organization_id IS NULL").first<{
      id: string;
    }>();
    await env.DB.prepare(
      "INSERT INTO runs (id, organization_id, workflow_id, workflow_name, temporal_workflow_id, status, input, error) VALUES (?, ?, ?, 'two_steps', ?, 'failed', '{}', 'start given up')",
    )
      .bind(crypto.randomUUID(), org.organizationId, wf!.id, workflowId)
      .run();
    const started = Date.now();
    const res = await get(`/workflow/${workflowId}/trace-log`);
    // It ended (failed) and never ran in Temporal: no trace will ever exist, so not 424 "not finished, retry".
    expect(res.status).toBe(404);
    expect(res.headers.get("retry-after")).toBeNull();
    expect(errorCodeOf(await res.json())).toBe("trace_not_available");
    // Well under HISTORY_CATCH_UP_MS: the read did not wait for history that will never come.
    expect(Date.now() - started).toBeLessThan(HISTORY_CATCH_UP_MS - 1000);
  });

  it("a run whose history does not complete within HISTORY_CATCH_UP_MS (3 s) is still 424 run_not_finished", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, [...firstStep(runId), finished(runId, "failed", "too loud")]);
    const res = await get(`/workflow/${workflowId}/trace-log`);
    expect(res.status).toBe(424);
    expect(errorCodeOf(await res.json())).toBe("run_not_finished");
  });

  it("404 trace_not_available when no trace was stored; 404 for an unknown run; 400 for a malformed rid", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, [...firstStep(runId), ...secondStepFailing(runId), finished(runId, "failed", "too loud")]);
    expect((await get(`/workflow/${workflowId}/trace-log`)).status).toBe(200);
    await env.TRACES.delete(`traces/${workflowId}/${runId}.json`);
    const gone = await get(`/workflow/${workflowId}/trace-log`);
    expect(gone.status).toBe(404);
    expect(errorCodeOf(await gone.json())).toBe("trace_not_available");
    const unknown = await get(`/workflow/${workflowId}/runs/${crypto.randomUUID()}/trace-log`);
    expect(unknown.status).toBe(404);
    expect(errorCodeOf(await unknown.json())).toBe("run_not_found");
    expect((await get(`/workflow/${workflowId}/runs/abc/trace-log`)).status).toBe(400);
  });
});

describe("GET /workflow/:id/trace-attributes (Output's shape)", () => {
  let org: Awaited<ReturnType<typeof seedOrganization>>;
  const get = (path: string, key = org.key) => call(path, { headers: { authorization: `Bearer ${key}` } });
  beforeAll(async () => {
    org = await seedOrganization();
    await seedCatalog();
  });

  const httpCost = (runId: string) =>
    attributeEvent(
      runId,
      { activityId: "1", stepName: "countWords", attempt: 1 },
      { type: "http:request", method: "GET", url: "https://example.com/", status: 200, count: 1, total: 0.0005 },
    );

  it("happy: 424 while the run goes on, then runtime, cost by bucket and token usage summed over the trace, on the latest and the pinned route", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, [...firstStep(runId), httpCost(runId), llmUsage(runId)]);
    const running = await get(`/workflow/${workflowId}/trace-attributes`);
    expect(running.status).toBe(424);
    expect(running.headers.get("retry-after")).toBe("2");
    expect(await running.json()).toMatchObject({ error: "WorkflowNotCompletedError", code: "run_not_finished" });

    await push(workflowId, [...secondStepFailing(runId), finished(runId, "failed", "too loud")]);
    for (const path of [`/workflow/${workflowId}/trace-attributes`, `/workflow/${workflowId}/runs/${runId}/trace-attributes`]) {
      const res = await get(path);
      expect(res.status, path).toBe(200);
      expect(await res.json()).toEqual({
        workflowId,
        runId,
        startTime: Date.UTC(2026, 0, 1, 0, 0, 1),
        finishTime: Date.UTC(2026, 0, 1, 0, 0, 17),
        runtime: 16_000,
        attributes: {
          cost: {
            total: 0.0035,
            components: [
              { name: "cost:llm:request", value: 0.003 },
              { name: "cost:http:request", value: 0.0005 },
              { name: "other", value: 0 },
            ],
          },
          tokenUsage: { inputTokens: 10, outputTokens: 20, cachedInputTokens: 0, totalTokens: 30 },
        },
        traceUrl: `r2:traces/${workflowId}/${runId}.json`,
      });
    }
    // The same money as the result's aggregations, and the same object as its trace destination.
    const result = (await (await get(`/workflow/${workflowId}/result`)).json()) as {
      aggregations: { cost: { total: number } };
      trace: { destinations: { remote: string } };
    };
    expect(result.aggregations.cost.total).toBe(0.0035);
    expect(result.trace.destinations.remote).toBe(`r2:traces/${workflowId}/${runId}.json`);
  });

  it("errors: 404 trace_not_available with no stored trace, 404 for an unknown workflow or run, 400 for a malformed rid", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, [...firstStep(runId), ...secondStepFailing(runId), finished(runId, "failed", "too loud")]);
    expect((await get(`/workflow/${workflowId}/trace-attributes`)).status).toBe(200);
    await env.TRACES.delete(`traces/${workflowId}/${runId}.json`);
    const gone = await get(`/workflow/${workflowId}/trace-attributes`);
    expect(gone.status).toBe(404);
    expect(await gone.json()).toMatchObject({ error: "TraceNotAvailableError", code: "trace_not_available" });
    for (const path of [
      `/workflow/${workflowId}/runs/${crypto.randomUUID()}/trace-attributes`,
      `/workflow/two_steps-${crypto.randomUUID()}/trace-attributes`,
    ]) {
      const unknown = await get(path);
      expect(unknown.status, path).toBe(404);
      expect(errorCodeOf(await unknown.json())).toBe("run_not_found");
    }
    expect((await get(`/workflow/${workflowId}/runs/abc/trace-attributes`)).status).toBe(400);
  });

  it("security: another organization's run is 404, as if it did not exist", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, [...firstStep(runId), llmUsage(runId), ...secondStepFailing(runId), finished(runId, "failed", "too loud")]);
    const other = await seedOrganization();
    for (const path of [`/workflow/${workflowId}/trace-attributes`, `/workflow/${workflowId}/runs/${runId}/trace-attributes`]) {
      const res = await get(path, other.key);
      expect(res.status, path).toBe(404);
      expect(errorCodeOf(await res.json())).toBe("run_not_found");
    }
  });
});

describe("POST /workflow/:id/reset at the edge", () => {
  let org: Awaited<ReturnType<typeof seedOrganization>>;
  const post = (path: string, body: unknown) =>
    call(path, {
      method: "POST",
      headers: { authorization: `Bearer ${org.key}`, "content-type": "application/json" },
      body: typeof body === "string" ? body : JSON.stringify(body),
    });
  beforeAll(async () => {
    org = await seedOrganization();
    await seedCatalog();
  });

  it("400 for a missing, empty or overlong stepName, a non-string reason, malformed JSON or a malformed rid; 404 for an unknown workflow", async () => {
    const { workflowId } = await createRunningRun(org.organizationId);
    for (const body of [{}, { stepName: "" }, { stepName: 5 }, { stepName: "x".repeat(257) }, { stepName: "shout", reason: 5 }, ""]) {
      const res = await post(`/workflow/${workflowId}/reset`, body);
      expect(res.status, JSON.stringify(body)).toBe(400);
    }
    expect(errorCodeOf(await (await post(`/workflow/${workflowId}/reset`, "{nope")).json())).toBe("invalid_json");
    expect((await post(`/workflow/${workflowId}/runs/not-a-uuid/reset`, { stepName: "shout" })).status).toBe(400);
    const unknown = await post(`/workflow/two_steps-${crypto.randomUUID()}/reset`, { stepName: "shout" });
    expect(unknown.status).toBe(404);
  });

  it("the run's row follows the run a reset started, and a late end of the replaced run does not undo it", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, [...firstStep(runId), ...secondStepFailing(runId), finished(runId, "failed", "too loud")]);
    const row = () =>
      env.DB.prepare("SELECT status, temporal_run_id, completed_at, error FROM runs WHERE temporal_workflow_id = ?")
        .bind(workflowId)
        .first();
    expect(await row()).toMatchObject({ status: "failed", temporal_run_id: runId });
    const newRunId = crypto.randomUUID();
    // What the reset route records once the host answered.
    await push(workflowId, [runResetEvent(newRunId, runId)]);
    expect(await row()).toEqual({ status: "running", temporal_run_id: newRunId, completed_at: null, error: null });
    // The replaced run's end, delivered again (e.g. the relay after a restart), changes nothing.
    await push(workflowId, [{ ...finished(runId, "terminated"), sourceKey: `run:${runId}:finished:again` }]);
    expect(await row()).toMatchObject({ status: "running", temporal_run_id: newRunId });
    // History and status now speak of the new run.
    await push(workflowId, firstStep(newRunId));
    const page = (await (
      await call(`/workflow/${workflowId}/history`, { headers: { authorization: `Bearer ${org.key}` } })
    ).json()) as Page;
    expect(page.runId).toBe(newRunId);
    expect(page.workflow).toMatchObject({ runId: newRunId, status: "running" });
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
