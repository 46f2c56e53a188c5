/**
 * What every subscriber of a run is owed however the fan-out is built (per-subscriber sockets today;
 * any shared upstream must keep it): its own suffix from its own Last-Event-ID, and, when it
 * connects in the middle of a burst of pushes, every event once, in order, with no gap between its
 * replay and the live events.
 */
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { BACKLOG_PART_MAX_BYTES, STREAM_MORE_CLOSE_CODE } from "../../durable-objects/run-stream/constants.ts";
import { openRunSubscription } from "../../src/sse/run-subscription.ts";
import { closeQuietly, MAX_UNSENT_BYTES } from "../../src/sse/writer.ts";
import { collectHistoryStream, readSse } from "../support/sse.ts";
import { call, seedCatalog, seedOrganization } from "./helpers.ts";
import { closeEvent, createRunningRun, finishedEvent, historyEvent, push, range, thinkingEvent } from "./stream-helpers.ts";

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

describe("a backlog longer than a stream may hold unread", () => {
  let org: Awaited<ReturnType<typeof seedOrganization>>;
  beforeAll(async () => {
    org = await seedOrganization();
    await seedCatalog();
  });

  /** A client reading at most `bytes` at a time, `ms` apart: workerd hands a plain reader a whole multi-MB frame at once. */
  const readInSmallPieces = (body: ReadableStream<Uint8Array>, bytes = 256 * 1024, ms = 10) => {
    const reader = body.getReader({ mode: "byob" });
    return new ReadableStream<Uint8Array>(
      {
        async pull(controller) {
          await new Promise((r) => setTimeout(r, ms));
          const { value, done } = await reader.read(new Uint8Array(bytes));
          if (done) return controller.close();
          controller.enqueue(value!);
        },
        cancel: (reason) => reader.cancel(reason),
      },
      { highWaterMark: 0 },
    );
  };

  it("with payloads, read slowly: every history event and thinking entry once, in order, then done (the backlog comes in parts as the client reads)", {
    timeout: 120_000,
  }, async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    // Eight events of about 3 MB (past MAX_UNSENT_BYTES twice over), a thinking entry after each.
    const blob = "x".repeat(3_000_000);
    const bulky = (n: number) => {
      const e = historyEvent(runId, n);
      return { ...e, data: { ...e.data, event: { ...e.data.event, payloads: { result: { blob } } } } };
    };
    await push(workflowId, [historyEvent(runId, 1)]);
    for (const n of range(2, 9)) await push(workflowId, [bulky(n), thinkingEvent(runId, n, `thought ${n}`)]);
    await push(workflowId, [closeEvent(runId, 10), finishedEvent(runId)]);
    expect(8 * blob.length).toBeGreaterThan(MAX_UNSENT_BYTES);

    const res = await call(`/workflow/${workflowId}/history/stream?includePayloads=true`, {
      headers: { authorization: `Bearer ${org.key}` },
    });
    expect(res.status).toBe(200);
    const order: string[] = [];
    for await (const m of readSse(readInSmallPieces(res.body!))) {
      if (m.event === "history") order.push(...(JSON.parse(m.data) as Array<{ eventId: string }>).map((e) => `h${e.eventId}`));
      else if (m.event === "thinking") order.push((JSON.parse(m.data) as { text: string }).text);
      else if (m.event !== "workflow") order.push(m.event);
    }
    expect(order).toEqual(["h1", ...range(2, 9).flatMap((n) => [`h${n}`, `thought ${n}`]), "h10", "done"]);
  });

  it("text that is not ASCII counts by its UTF-8 bytes: thinking of about 4 MB of UTF-8 each (1.4 million characters), read slowly, arrives whole on one stream, then done", {
    timeout: 120_000,
  }, async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, [historyEvent(runId, 1)]);
    // Ten of them: counted in characters, a part would be four (16.8 MB), past MAX_UNSENT_BYTES with what is still unread.
    for (const n of range(1, 10)) await push(workflowId, [thinkingEvent(runId, n, `${n % 10}${"思".repeat(1_397_000)}`)]);
    await push(workflowId, [closeEvent(runId, 2), finishedEvent(runId)]);
    const res = await call(`/workflow/${workflowId}/history/stream`, { headers: { authorization: `Bearer ${org.key}` } });
    const order: string[] = [];
    for await (const m of readSse(readInSmallPieces(res.body!))) {
      if (m.event === "history") order.push(...(JSON.parse(m.data) as Array<{ eventId: string }>).map((e) => `h${e.eventId}`));
      else if (m.event === "thinking") order.push(`t${(JSON.parse(m.data) as { text: string }).text[0]}`);
      else if (m.event !== "workflow") order.push(m.event);
    }
    expect(order).toEqual(["h1", ...range(1, 10).map((n) => `t${n % 10}`), "h2", "done"]);
  });

  it("a history event logged after one with a higher id is sent though a part ends between them (the next part resumes after the higher id)", {
    timeout: 60_000,
  }, async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    const bulky = (n: number) => {
      const e = historyEvent(runId, n);
      return { ...e, data: { ...e.data, event: { ...e.data.event, payloads: { result: { blob: "x".repeat(2_500_000) } } } } };
    };
    await push(workflowId, [historyEvent(runId, 1)]);
    await push(workflowId, [bulky(2), bulky(4)]);
    await push(workflowId, [historyEvent(runId, 3)]);
    await push(workflowId, [closeEvent(runId, 5), finishedEvent(runId)]);
    const res = await call(`/workflow/${workflowId}/history/stream`, { headers: { authorization: `Bearer ${org.key}` } });
    const seen = await collectHistoryStream(res.body!);
    expect(seen.done).toHaveLength(1);
    expect(seen.eventIds).toEqual([1, 2, 3, 4, 5]);
  });

  it("a stream keeps its place on a full run between the parts of its backlog (the run's subscriber limit, 200 here)", {
    timeout: 60_000,
  }, async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, [historyEvent(runId, 1)]);
    for (const n of range(1, 6)) await push(workflowId, [thinkingEvent(runId, n, String(n).repeat(1_500_000))]);
    const ours = await call(`/workflow/${workflowId}/history/stream`, { headers: { authorization: `Bearer ${org.key}` } });
    expect(ours.status).toBe(200);
    // Unread, the stream waits for its client between parts; meanwhile other streams fill the run.
    await new Promise((r) => setTimeout(r, 1_000));
    const others: WebSocket[] = [];
    try {
      for (const _ of range(1, 200)) others.push(await openRunSubscription(env, workflowId, { view: "log", runId, after: "999999" }));
      await expect(openRunSubscription(env, workflowId, { view: "log", runId, after: "999999" })).rejects.toThrow(/open streams/);
      const order: string[] = [];
      for await (const m of readSse(ours.body!)) {
        if (m.event === "thinking") order.push(`t${(JSON.parse(m.data) as { text: string }).text[0]}`);
        else if (m.event === "history") order.push("h");
        else if (m.event !== "workflow") order.push(m.event);
        if (order.length >= 7 || m.event === "server_error") break;
      }
      expect(order).toEqual(["h", ...range(1, 6).map((n) => `t${n}`)]);
    } finally {
      for (const socket of others) closeQuietly(socket);
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

  it("a backlog over BACKLOG_PART_MAX_BYTES comes in parts: the DO sends the first and closes with STREAM_MORE_CLOSE_CODE; a subscription from the last seq gets the rest, each entry once, then done", async () => {
    const org = await seedOrganization();
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    // Six entries of 1.5 MB: about 9 MB of backlog, more than two parts' worth.
    const text = (n: number) => String(n).repeat(1_500_000);
    for (const n of range(1, 6)) await push(workflowId, [thinkingEvent(runId, n, text(n))]);
    await push(workflowId, [historyEvent(runId, 1), closeEvent(runId, 2), finishedEvent(runId)]);

    const part = async (after: number) => {
      const socket = await openRunSubscription(env, workflowId, { view: "log", runId, after: String(after) });
      socket.accept();
      const messages: Array<{ kind: string; entry?: { type: string; seq: number; data: { text?: string } } }> = [];
      socket.addEventListener("message", (e) => {
        messages.push(JSON.parse(e.data as string));
      });
      const code = await new Promise<number>((resolve) => socket.addEventListener("close", (e) => resolve(e.code)));
      return { messages, code };
    };
    const parts: Array<Awaited<ReturnType<typeof part>>> = [];
    let after = 0;
    for (let i = 0; i < 10; i++) {
      const next = await part(after);
      parts.push(next);
      if (next.code !== STREAM_MORE_CLOSE_CODE) break;
      after = next.messages.at(-1)!.entry!.seq;
    }
    expect(parts.length).toBeGreaterThan(2);
    for (const { messages, code } of parts.slice(0, -1)) {
      expect(code).toBe(STREAM_MORE_CLOSE_CODE);
      expect(messages.some((m) => m.kind === "done")).toBe(false);
      const chars = messages.reduce((sum, m) => sum + (m.entry?.data.text?.length ?? 0), 0);
      // A part ends before the entry that would take it past the limit: within one entry of it.
      expect(chars).toBeLessThanOrEqual(BACKLOG_PART_MAX_BYTES);
      expect(chars).toBeGreaterThan(BACKLOG_PART_MAX_BYTES - 1_600_000);
    }
    expect(parts.at(-1)!.messages.at(-1)).toMatchObject({ kind: "done" });
    const entries = parts.flatMap((p) => p.messages.filter((m) => m.kind === "entry").map((m) => m.entry!));
    expect(entries.map((e) => e.type)).toEqual(["run.started", ...range(1, 6).map(() => "thinking"), "run.finished"]);
    expect(entries.filter((e) => e.type === "thinking").map((e) => e.data.text)).toEqual(range(1, 6).map(text));
  });

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
