import { Client, Connection } from "@temporalio/client";
import { EventSource, type FetchLike } from "eventsource";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { inject } from "vitest";
import { eventually, postJson } from "./helpers.ts";

interface Connection_ {
  lastEventId: string | undefined;
  status: number;
}

/**
 * fetch for EventSource that cuts the first connection like a network drop, right after the
 * first `history` frame, so EventSource reconnects by itself with Last-Event-ID.
 */
function droppingFetch(connections: Connection_[]): FetchLike {
  return async (url, init) => {
    const res = await fetch(url, init as RequestInit);
    const headers = init.headers as Record<string, string>;
    const lastEventId = Object.entries(headers).find(([k]) => k.toLowerCase() === "last-event-id")?.[1];
    connections.push({ lastEventId, status: res.status });
    if (connections.length > 1 || !res.body) return res;
    const reader = res.body.getReader();
    let cut = false;
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (cut) {
          await reader.cancel();
          controller.error(new Error("simulated network drop"));
          return;
        }
        const { value, done } = await reader.read();
        if (done) return controller.close();
        controller.enqueue(value);
        if (new TextDecoder().decode(value).includes("event: history")) cut = true;
      },
    });
    return { body, url: res.url, status: res.status, redirected: res.redirected, headers: res.headers };
  };
}

describe("a browser-style EventSource client following two_steps", () => {
  let client: Client;
  beforeAll(async () => {
    client = new Client({ connection: await Connection.connect({ address: inject("temporalAddress") }) });
  });
  afterAll(async () => client?.connection.close());

  it("follows the run to done across a dropped connection and sees every history event exactly once", async () => {
    const start = await postJson("/workflow/start", { workflowName: "two_steps", input: { text: "watch me work", pauseMs: 1500 } });
    const { workflowId, streamToken } = (await start.json()) as { workflowId: string; streamToken: string };

    const connections: Connection_[] = [];
    const seen: number[] = [];
    const workflowEvents: unknown[] = [];
    const done: unknown[] = [];
    // ?token= because EventSource cannot send an Authorization header.
    const es = new EventSource(`${inject("baseUrl")}/workflow/${workflowId}/history/stream?token=${streamToken}`, {
      fetch: droppingFetch(connections),
    });
    es.addEventListener("workflow", (e) => workflowEvents.push(JSON.parse(e.data)));
    es.addEventListener("history", (e) => {
      const ids = (JSON.parse(e.data) as Array<{ eventId: string }>).map((ev) => Number(ev.eventId));
      expect(e.lastEventId).toBe(String(ids.at(-1)));
      seen.push(...ids);
    });
    es.addEventListener("done", (e) => done.push(JSON.parse(e.data)));

    try {
      await eventually(async () => done.length > 0, 60_000, 100);
      // After done the server ends the stream; EventSource reconnects once more, gets 204 and stops.
      await eventually(async () => es.readyState === EventSource.CLOSED, 30_000, 100);
    } finally {
      es.close();
    }

    const history = await client.workflow.getHandle(workflowId).fetchHistory();
    const all = history.events!.map((e) => Number(e.eventId));
    expect(seen).toEqual(all); // every event, once, in order
    expect(done).toEqual([{ reason: "WORKFLOW_EXECUTION_COMPLETED" }]);
    expect(workflowEvents.length).toBeGreaterThanOrEqual(2); // one per connection
    expect(connections[0]!.lastEventId).toBeUndefined();
    const resumedFrom = Number(connections[1]!.lastEventId);
    expect(resumedFrom).toBeGreaterThan(0);
    expect(resumedFrom).toBeLessThan(all.length); // the drop really was mid-run
    expect(connections.at(-1)!.status).toBe(204);
  });
});
