/**
 * What every subscriber of a run is owed however the fan-out is built (per-subscriber sockets today;
 * any shared upstream must keep it): its own suffix from its own Last-Event-ID, and, when it
 * connects in the middle of a burst of pushes, every event once, in order, with no gap between its
 * replay and the live events.
 */
import { beforeAll, describe, expect, it } from "vitest";
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
