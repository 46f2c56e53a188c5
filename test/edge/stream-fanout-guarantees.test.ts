/**
 * What every subscriber of a run is owed however the fan-out is built (per-subscriber sockets today;
 * any shared upstream must keep it): its own suffix from its own Last-Event-ID, and, when it
 * connects in the middle of a burst of pushes, every event once, in order, with no gap between its
 * replay and the live events.
 */
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { openRunSubscription } from "../../src/sse/run-subscription.ts";
import { collectHistoryStream } from "../support/sse.ts";
import { call, seedCatalog, seedOrganization } from "./helpers.ts";
import { closeEvent, createRunningRun, finishedEvent, historyEvent, push, range } from "./stream-helpers.ts";

describe("fan-out guarantees per subscriber", () => {
  let org: Awaited<ReturnType<typeof seedOrganization>>;
  const open = (workflowId: string, query = "", headers: Record<string, string> = {}) =>
    call(`/workflow/${workflowId}/history/stream${query}`, { headers: { authorization: `Bearer ${org.key}`, ...headers } });

  beforeAll(async () => {
    org = await seedOrganization();
    await seedCatalog();
  });

  it("subscribers of one run with different Last-Event-IDs each get exactly their own suffix, then the live events", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(
      workflowId,
      range(1, 20).map((n) => historyEvent(runId, n)),
    );
    // Cursors 0..19, half by header and half by query, all open at once on the same run.
    const cursors = range(0, 19);
    const streams = await Promise.all(
      cursors.map((k) =>
        k === 0 ? open(workflowId) : k % 2 ? open(workflowId, "", { "last-event-id": String(k) }) : open(workflowId, `?lastEventId=${k}`),
      ),
    );
    const collected = Promise.all(streams.map((s) => collectHistoryStream(s.body!)));
    await push(
      workflowId,
      range(21, 25).map((n) => historyEvent(runId, n)),
    );
    await push(workflowId, [...range(26, 30).map((n) => historyEvent(runId, n)), closeEvent(runId, 31), finishedEvent(runId)]);
    const seen = await collected;
    seen.forEach((s, i) => {
      const k = cursors[i]!;
      expect(s.eventIds, `Last-Event-ID ${k}`).toEqual(range(k + 1, 31));
      expect(s.done, `Last-Event-ID ${k}`).toHaveLength(1);
      expect(s.serverErrors).toEqual([]);
      expect(s.workflow).toHaveLength(1);
    });
  });

  it("subscribers connecting in the middle of a burst of pushes miss nothing and get nothing twice", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, [historyEvent(runId, 1)]);
    const LAST = 40;
    const joined: Array<{ cursor: number; seen: ReturnType<typeof collectHistoryStream> }> = [];
    // The burst: one event per push, sent one after another, while subscribers keep connecting.
    const burst = (async () => {
      for (let n = 2; n < LAST; n++) await push(workflowId, [historyEvent(runId, n)]);
      await push(workflowId, [closeEvent(runId, LAST), finishedEvent(runId)]);
    })();
    for (let i = 0; i < 24; i++) {
      // Alternately from the start and from event 1 (a client that had only the first event).
      const cursor = i % 2 ? 1 : 0;
      const res = await open(workflowId, "", cursor ? { "last-event-id": String(cursor) } : {});
      if (res.status === 204) break; // the burst is over and this client has everything
      joined.push({ cursor, seen: collectHistoryStream(res.body!) });
      await new Promise((r) => setTimeout(r, 5));
    }
    await burst;
    expect(joined.length).toBeGreaterThan(4);
    for (const { cursor, seen } of joined) {
      const s = await seen;
      expect(s.eventIds, `cursor ${cursor}`).toEqual(range(cursor + 1, LAST));
      expect(s.done).toHaveLength(1);
      expect(s.serverErrors).toEqual([]);
    }
  });
});

describe("the log view (run viewer, Workflow Runs and published-run streams)", () => {
  beforeAll(async () => {
    await seedCatalog();
  });

  /** Every message a raw log-view subscription of the run gets, backlog then live, until `done`. */
  const logMessages = async (workflowId: string, runId: string, live: () => Promise<unknown>) => {
    const socket = await openRunSubscription(env, workflowId, { view: "log", runId, after: "0" });
    socket.accept();
    const messages: Array<{ kind: string; entry?: { type: string; seq: number } }> = [];
    const closed = new Promise<void>((resolve) => socket.addEventListener("close", () => resolve()));
    socket.addEventListener("message", (e) => messages.push(JSON.parse(e.data as string)));
    await live();
    await closed;
    return messages;
  };

  it("is never sent Temporal's history (no route over it shows it), backlog or live; every other entry once, in order", async () => {
    const org = await seedOrganization();
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    const step = (state: string) => ({
      sourceKey: `step:${runId}:1:1:${state}`,
      type: "step",
      at: new Date().toISOString(),
      data: { runId, activityId: "1", stepName: "countWords", attempt: 1, state },
    });
    await push(workflowId, [historyEvent(runId, 1), step("started"), historyEvent(runId, 2)]);
    const messages = await logMessages(workflowId, runId, () =>
      push(workflowId, [historyEvent(runId, 3), step("completed"), closeEvent(runId, 4), finishedEvent(runId)]),
    );
    const entries = messages.filter((m) => m.kind === "entry").map((m) => m.entry!);
    expect(entries.map((e) => e.type)).toEqual(["run.started", "step", "step", "run.finished"]);
    expect(entries.map((e) => e.seq)).toEqual([...entries.map((e) => e.seq)].sort((a, b) => a - b));
    expect(messages.at(-1)).toMatchObject({ kind: "done" });
  });
});
