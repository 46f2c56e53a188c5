/// <reference types="vite/client" />
import { abortAllDurableObjects, createExecutionContext, runInDurableObject, waitOnExecutionContext } from "cloudflare:test";
import app from "../../src/index.ts";
import { env } from "cloudflare:workers";
import { SignJWT } from "jose";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { clearApiKeyCache } from "../../src/middleware/api-key-auth/index.ts";
import { runResetEvent } from "../../src/shared/run-events.ts";
import { runStream } from "../../src/run-stream-client.ts";
import { mintStreamToken, verifyStreamToken } from "../../src/stream-tokens.ts";
import wranglerToml from "../../wrangler.toml?raw";
import { collectHistoryStream, readSse, type SseMessage } from "../support/sse.ts";
import {
  call,
  createKey,
  createPromptWorkflow,
  type OutputErrorBody,
  preflight,
  scriptedStart,
  scriptHost,
  seedCatalog,
  seedOrganization,
} from "./helpers.ts";
import { HOST_PATHS } from "../../src/shared/host-api.ts";
import { MIN_SECRET_LENGTH } from "../../src/shared/signing.ts";
import {
  closeEvent,
  continuedAsNewEvents,
  createRunningRun,
  expectExactResume,
  finishedEvent,
  historyEvent,
  push,
  range,
  thinkingEvent,
} from "./stream-helpers.ts";

const STREAM_SECRET = "edge-test-stream-token-secret-long-enough-for-hs256";

describe("GET /workflow/:id/history/stream", () => {
  let org: Awaited<ReturnType<typeof seedOrganization>>;
  const auth = () => ({ authorization: `Bearer ${org.key}` });
  const open = (workflowId: string, query = "", headers: Record<string, string> = {}) =>
    call(`/workflow/${workflowId}/history/stream${query}`, { headers: { ...auth(), ...headers } });

  beforeAll(async () => {
    org = await seedOrganization();
    await seedCatalog();
  });

  // About 1.4 s alone; 200 streams on workerd's one thread can pass vitest's 5 s default when the
  // machine is shared with other suites, which is not what this test is about: it checks delivery.
  it("delivers every event exactly once, in order, to 200 concurrent subscribers", { timeout: 30_000 }, async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(
      workflowId,
      range(1, 5).map((n) => historyEvent(runId, n)),
    );
    const streams = await Promise.all(range(1, 200).map(() => open(workflowId)));
    expect(streams.every((r) => r.status === 200 && r.headers.get("content-type")?.startsWith("text/event-stream"))).toBe(true);
    const collected = Promise.all(streams.map((r) => collectHistoryStream(r.body!)));

    // Batches, with redeliveries of events already sent (as a retrying host would).
    await push(
      workflowId,
      range(6, 12).map((n) => historyEvent(runId, n)),
    );
    expect(
      await push(
        workflowId,
        range(4, 16).map((n) => historyEvent(runId, n)),
      ),
    ).toEqual({ accepted: 4, duplicates: 9 });
    await push(workflowId, [...range(17, 24).map((n) => historyEvent(runId, n)), closeEvent(runId, 25)]);
    await push(workflowId, [finishedEvent(runId), finishedEvent(runId)]);

    for (const seen of await collected) {
      expect(seen.workflow).toHaveLength(1);
      expect(seen.eventIds).toEqual(range(1, 25));
      expect(seen.done).toEqual([{ reason: "WORKFLOW_EXECUTION_COMPLETED" }]);
      expect(seen.serverErrors).toEqual([]);
      for (const batch of seen.batches) expect(batch.id).toBe(String(batch.eventIds.at(-1)));
    }
  });

  it("security: a run takes RUN_STREAM_MAX_SUBSCRIBERS open streams (200 here); the next is 429 until one closes", {
    timeout: 30_000,
  }, async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, [historyEvent(runId, 1)]);
    const streams = await Promise.all(range(1, 200).map(() => open(workflowId)));
    expect(streams.every((r) => r.status === 200)).toBe(true);
    const refused = await open(workflowId);
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThan(0);
    expect((await refused.json()) as OutputErrorBody).toMatchObject({ error: "TooManySubscribersError", code: "too_many_subscribers" });
    // A stream token's holder is held to the same bound.
    const { token } = await mintStreamToken(STREAM_SECRET, { organizationId: org.organizationId, apiKeyId: org.keyId, workflowId });
    expect((await call(`/workflow/${workflowId}/history/stream?token=${token}`)).status).toBe(429);
    // One client leaves: its place is free again.
    await streams[0]!.body!.cancel();
    await vi.waitFor(
      async () => {
        const again = await open(workflowId);
        expect(again.status).toBe(200);
        streams[0] = again;
      },
      { timeout: 5_000, interval: 100 },
    );
    await Promise.all(streams.map((s) => s.body!.cancel()));
  });
  it("security: an API key holds MAX_OPEN_STREAMS_PER_KEY open streams over all its runs (250 here), its stream tokens' included; the next is 429 too_many_streams until one ends", {
    timeout: 60_000,
  }, async () => {
    const own = await seedOrganization();
    const headers = { authorization: `Bearer ${own.key}` };
    const runs = await Promise.all(
      [1, 2].map(async () => {
        const run = await createRunningRun(own.organizationId);
        await push(run.workflowId, [historyEvent(run.runId, 1)]);
        return run;
      }),
    );
    const openOn = (workflowId: string, key = own.key) =>
      call(`/workflow/${workflowId}/history/stream`, { headers: { authorization: `Bearer ${key}` } });
    // 125 on each run: neither run is full (200 each), the key is.
    const streams = await Promise.all(range(1, 250).map((n) => openOn(runs[n % 2]!.workflowId)));
    expect(streams.map((r) => r.status).filter((status) => status !== 200)).toEqual([]);
    // Taking the place costs a stream nothing of its backlog (the last one opened, the busiest moment).
    const last = streams.pop()!;
    expect((await collectHistoryStream(last.body!, 1)).eventIds).toEqual([1]);
    await last.body!.cancel().catch(() => undefined);
    await vi.waitFor(
      async () => {
        const again = await openOn(runs[1]!.workflowId);
        expect(again.status).toBe(200);
        streams.push(again);
      },
      { timeout: 5_000, interval: 100 },
    );
    const refused = await openOn(runs[0]!.workflowId);
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThan(0);
    expect((await refused.json()) as OutputErrorBody).toMatchObject({ error: "TooManyStreamsError", code: "too_many_streams" });
    // Stream tokens count against the key that minted them: minting one opens no more streams.
    const { token } = await mintStreamToken(STREAM_SECRET, {
      organizationId: own.organizationId,
      apiKeyId: own.keyId,
      workflowId: runs[1]!.workflowId,
    });
    const viaToken = await call(`/workflow/${runs[1]!.workflowId}/history/stream?token=${token}`);
    expect([viaToken.status, ((await viaToken.json()) as OutputErrorBody).code]).toEqual([429, "too_many_streams"]);
    // Another key of the organization has its own count.
    const other = await createKey(own.organizationId);
    const elsewhere = await openOn(runs[0]!.workflowId, other.key);
    expect(elsewhere.status).toBe(200);
    await elsewhere.body!.cancel();
    // A stream whose run its own request starts is never refused: the run would be started and not shown.
    const restoreHost = scriptHost(async (request, path) =>
      path === HOST_PATHS.start ? Response.json(await scriptedStart(request)) : new Response("not scripted", { status: 500 }),
    );
    try {
      const promptWorkflowId = await createPromptWorkflow(own.organizationId);
      const started = await call(`/api/v1/run/${promptWorkflowId}/stream`, {
        method: "POST",
        headers: { ...headers, "content-type": "application/json" },
        body: JSON.stringify({ audience: "kids", topic: "owls" }),
      });
      expect([started.status, started.headers.get("content-type")?.split(";")[0]]).toEqual([200, "text/event-stream"]);
      await started.body!.cancel();
    } finally {
      restoreHost();
    }
    // One stream ends: its place is free again.
    await streams[0]!.body!.cancel();
    await vi.waitFor(
      async () => {
        const again = await openOn(runs[0]!.workflowId);
        expect(again.status).toBe(200);
        streams[0] = again;
      },
      { timeout: 5_000, interval: 100 },
    );
    await Promise.all(streams.map((s) => s.body!.cancel()));
  });
  it("a client gone before its stream opened holds none of its key's places (no abort event comes after the fact)", async () => {
    const own = await seedOrganization();
    const { workflowId, runId } = await createRunningRun(own.organizationId);
    await push(workflowId, [historyEvent(runId, 1)]);
    const gone = new AbortController();
    gone.abort();
    const ctx = createExecutionContext();
    const request = new Request(`http://edge.test/workflow/${workflowId}/history/stream`, {
      headers: { authorization: `Bearer ${own.key}` },
      signal: gone.signal,
    });
    expect((await app.fetch(request, env, ctx)).status).toBe(200);
    await waitOnExecutionContext(ctx);
    const limiter = env.RATE_LIMITER.get(env.RATE_LIMITER.idFromName(own.keyId));
    const leases = await runInDurableObject(limiter, (_instance, state) => [...state.storage.kv.list({ prefix: "stream-lease:" })]);
    expect(leases).toEqual([]);
  });
  it("security: HEAD answers a stream's status and headers and holds no subscription (not one of the run's places, nothing left open)", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, [historyEvent(runId, 1)]);
    const viewerToken = (await mintStreamToken(STREAM_SECRET, { organizationId: org.organizationId, apiKeyId: org.keyId, workflowId }))
      .token;
    for (const path of [
      `/workflow/${workflowId}/history/stream`,
      `/workflow/${workflowId}/runs/${runId}/history/stream`,
      `/runs/${workflowId}/events?token=${viewerToken}`,
    ]) {
      const res = await call(path, { method: "HEAD", headers: auth() });
      expect(res.status, path).toBe(200);
      expect(res.headers.get("content-type"), path).toContain("text/event-stream");
      expect(await res.text(), path).toBe("");
    }
    // What GET would refuse, HEAD refuses the same way.
    expect((await call(`/workflow/no-such-run/history/stream`, { method: "HEAD", headers: auth() })).status).toBe(404);
    // The DO sees a closed subscription a moment after the Worker closes it.
    await vi.waitFor(
      async () => expect(await runInDurableObject(runStream(env, workflowId), (_instance, state) => state.getWebSockets().length)).toBe(0),
      { timeout: 2_000, interval: 50 },
    );
  });

  it("first bytes go out at once, and `workflow` describes the run", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(
      workflowId,
      range(1, 3).map((n) => historyEvent(runId, n)),
    );
    const res = await open(workflowId);
    const reader = res.body!.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    expect(first).toContain("retry:");
    reader.releaseLock();
    for await (const message of readSse(res.body!)) {
      expect(message.event).toBe("workflow");
      expect(JSON.parse(message.data)).toMatchObject({
        workflowId,
        runId,
        status: "running",
        historyLength: 3,
        taskQueue: "outrider",
        closed: false,
      });
      break;
    }
  });

  it("a subscriber that leaves mid-run and comes back with Last-Event-ID gets exactly the missed events", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(
      workflowId,
      range(1, 4).map((n) => historyEvent(runId, n)),
    );
    const first = await open(workflowId);
    const pending = collectHistoryStream(first.body!, 8); // reads until event 8, then hangs up
    await push(
      workflowId,
      range(5, 8).map((n) => historyEvent(runId, n)),
    );
    const before = await pending;
    expect(before.eventIds).toEqual(range(1, 8));

    await push(
      workflowId,
      range(9, 14).map((n) => historyEvent(runId, n)),
    );
    const resumed = await open(workflowId, "", { "last-event-id": "8" });
    const after = collectHistoryStream(resumed.body!);
    await push(workflowId, [closeEvent(runId, 15), finishedEvent(runId)]);
    const seen = await after;
    expect(seen.eventIds).toEqual(range(9, 15));
    expect([...before.eventIds, ...seen.eventIds]).toEqual(range(1, 15));

    // ?lastEventId= works the same (for clients that cannot set headers).
    const viaQuery = await collectHistoryStream((await open(workflowId, "?lastEventId=12")).body!);
    expect(viaQuery.eventIds).toEqual([13, 14, 15]);
    expect(viaQuery.done).toEqual([{ reason: "WORKFLOW_EXECUTION_COMPLETED" }]);
    // An empty Last-Event-ID names no event (EventSource sends none then): the query's id holds,
    // rather than the whole history again.
    const emptyHeader = await collectHistoryStream((await open(workflowId, "?lastEventId=12", { "last-event-id": "" })).body!);
    expect(emptyHeader.eventIds).toEqual([13, 14, 15]);
  });

  it("a finished run: replay then done; past its last event, 204 so EventSource stops", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, [...range(1, 5).map((n) => historyEvent(runId, n)), closeEvent(runId, 6), finishedEvent(runId, "failed")]);
    const full = await collectHistoryStream((await open(workflowId)).body!);
    expect(full.eventIds).toEqual(range(1, 6));
    expect(full.done).toEqual([{ reason: "WORKFLOW_EXECUTION_FAILED" }]);
    expect(full.workflow).toEqual([expect.objectContaining({ status: "failed", closed: true })]);
    const past = await open(workflowId, "", { "last-event-id": "6" });
    expect(past.status).toBe(204);
    expect((await open(workflowId, "?lastEventId=99")).status).toBe(204);
  });

  it("done waits for the closing history events even when the outcome arrives first", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(
      workflowId,
      range(1, 3).map((n) => historyEvent(runId, n)),
    );
    const collected = collectHistoryStream((await open(workflowId)).body!);
    await push(workflowId, [finishedEvent(runId)]); // e.g. the edge settled a /workflow/run first
    await push(workflowId, [historyEvent(runId, 4), closeEvent(runId, 5)]);
    const seen = await collected;
    expect(seen.eventIds).toEqual(range(1, 5));
    expect(seen.done).toHaveLength(1);
  });

  it("aborting the Durable Object mid-run loses nothing and duplicates nothing", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(
      workflowId,
      range(1, 5).map((n) => historyEvent(runId, n)),
    );
    const streams = await Promise.all(range(1, 10).map(() => open(workflowId)));
    const collected = Promise.all(streams.map((r) => collectHistoryStream(r.body!)));
    await push(
      workflowId,
      range(6, 10).map((n) => historyEvent(runId, n)),
    );
    await abortAllDurableObjects();
    // The host retries what it may not have delivered: some of it is already stored.
    await push(
      workflowId,
      range(8, 14).map((n) => historyEvent(runId, n)),
    );
    await push(workflowId, [closeEvent(runId, 15), finishedEvent(runId)]);
    for (const seen of await collected) {
      expect(seen.serverErrors).toEqual([]);
      expect(seen.eventIds).toEqual(range(1, 15));
      expect(seen.done).toHaveLength(1);
    }
  });

  it("includePayloads=true adds decoded payloads; without it they are left out", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, [historyEvent(runId, 1), historyEvent(runId, 2), closeEvent(runId, 3), finishedEvent(runId)]);
    // Output's event form: numeric eventType, eventTypeName, Temporal's *EventAttributes key.
    const plain = await readHistoryEvents(await open(workflowId));
    expect(plain[1]).toEqual({
      eventId: "2",
      eventType: 12,
      eventTypeName: "ACTIVITY_TASK_COMPLETED",
      eventTime: expect.any(String),
      activityTaskCompletedEventAttributes: {},
    });
    expect(plain.every((e) => !("payloads" in e) && !("attributes" in e))).toBe(true);
    const rich = await readHistoryEvents(await open(workflowId, "?includePayloads=true"));
    expect(rich[1]).toMatchObject({ eventId: "2", activityTaskCompletedEventAttributes: { result: [{ step: 2 }] } });
    expect(rich[2]).toMatchObject({
      eventTypeName: "WORKFLOW_EXECUTION_COMPLETED",
      workflowExecutionCompletedEventAttributes: { result: [{ step: 3 }] },
    });
  });

  it("a history larger than a stream may hold unread (16 MiB), with payloads: it arrives whole, in frames of a few MiB, then done", {
    timeout: 60_000,
  }, async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    // Six events of about 3 MB each (Temporal allows 2 MiB a payload; a few payloads an event).
    const blob = "x".repeat(3_000_000);
    const events = range(1, 6).map((n) => {
      const e = historyEvent(runId, n);
      return { ...e, data: { ...e.data, event: { ...e.data.event, payloads: { result: { blob } } } } };
    });
    for (let i = 0; i < events.length; i += 2) await push(workflowId, events.slice(i, i + 2));
    await push(workflowId, [closeEvent(runId, 7), finishedEvent(runId)]);
    const frames: Array<{ event: string; id?: string; bytes: number }> = [];
    for await (const m of readSse((await open(workflowId, "?includePayloads=true")).body!))
      frames.push({ event: m.event, id: m.id, bytes: m.data.length });
    const history = frames.filter((f) => f.event === "history");
    expect(history.map((f) => f.id).at(-1)).toBe("7");
    expect(history.length).toBeGreaterThan(1);
    expect(Math.max(...history.map((f) => f.bytes))).toBeLessThan(8 * 1024 * 1024);
    expect(frames.at(-1)!.event).toBe("done");
  });

  it("the runs/:rid variant streams that run; an unknown rid is 404, a malformed one 400", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, [historyEvent(runId, 1), closeEvent(runId, 2), finishedEvent(runId)]);
    const res = await call(`/workflow/${workflowId}/runs/${runId}/history/stream`, { headers: auth() });
    expect((await collectHistoryStream(res.body!)).eventIds).toEqual([1, 2]);
    const unknown = await call(`/workflow/${workflowId}/runs/${crypto.randomUUID()}/history/stream`, { headers: auth() });
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as OutputErrorBody).code).toBe("run_not_found");
    const malformed = await call(`/workflow/${workflowId}/runs/no-such-run/history/stream`, { headers: auth() });
    expect(malformed.status).toBe(400);
    expect(((await malformed.json()) as OutputErrorBody).code).toBe("invalid_request");
  });

  it("?runId= streams that run, as Output reads it: an earlier run after a reset, not the latest; a malformed one is 400", async () => {
    const { workflowId, runId: oldRunId } = await createRunningRun(org.organizationId);
    await push(workflowId, [
      historyEvent(oldRunId, 1),
      historyEvent(oldRunId, 2),
      closeEvent(oldRunId, 3),
      finishedEvent(oldRunId, "failed"),
    ]);
    const newRunId = crypto.randomUUID();
    await push(workflowId, [runResetEvent(newRunId, oldRunId, new Date().toISOString()), historyEvent(newRunId, 1)]);
    await env.DB.prepare("UPDATE runs SET temporal_run_id = ?, status = 'running' WHERE temporal_workflow_id = ?")
      .bind(newRunId, workflowId)
      .run();
    const old = await open(workflowId, `?runId=${oldRunId.toUpperCase()}`);
    expect(old.status).toBe(200);
    const streamed = await collectHistoryStream(old.body!);
    expect(streamed.eventIds).toEqual([1, 2, 3]);
    expect(streamed.done).toEqual([{ reason: "WORKFLOW_EXECUTION_FAILED" }]);
    // The pinned path wins over the query, as in Output.
    const pinned = await call(`/workflow/${workflowId}/runs/${oldRunId}/history/stream?runId=${newRunId}`, { headers: auth() });
    expect((await collectHistoryStream(pinned.body!)).eventIds).toEqual([1, 2, 3]);
    for (const [query, status] of [
      [`?runId=${crypto.randomUUID()}`, 404],
      ["?runId=nope", 400],
    ] as const) {
      const res = await open(workflowId, query);
      expect(res.status, query).toBe(status);
    }
  });

  it("the run a continue-as-new named opens at once, pinned, also before D1 follows the hand-over (what Output's clients do on done.newRunId)", async () => {
    const { workflowId, runId: first } = await createRunningRun(org.organizationId);
    const next = crypto.randomUUID();
    await push(workflowId, [historyEvent(first, 1), ...continuedAsNewEvents(first, 2, next)]);
    // D1 a moment behind the log: the row still names the first run.
    await env.DB.prepare("UPDATE runs SET temporal_run_id = ? WHERE temporal_workflow_id = ?").bind(first, workflowId).run();
    const res = await call(`/workflow/${workflowId}/runs/${next}/history/stream`, { headers: auth() });
    expect(res.status).toBe(200);
    const reader = readSse(res.body!)[Symbol.asyncIterator]();
    let message = await reader.next();
    while (!message.done && message.value.event !== "workflow") message = await reader.next();
    expect(JSON.parse(message.value!.data)).toMatchObject({ runId: next, status: "running" });
    await reader.return?.(undefined);
  });

  it("an unpinned stream resumed after `done` of a run that continued as new goes on with the next run from its first event, none skipped", async () => {
    const { workflowId, runId: first } = await createRunningRun(org.organizationId);
    await push(workflowId, [historyEvent(first, 1), historyEvent(first, 2), thinkingEvent(first, 1, "Planning."), historyEvent(first, 3)]);
    // The client follows the first run, and gets its end: `done` naming the next run.
    const followed = await open(workflowId);
    const seen: SseMessage[] = [];
    const reading = (async () => {
      for await (const m of readSse(followed.body!)) seen.push(m);
    })();
    const next = crypto.randomUUID();
    await push(workflowId, continuedAsNewEvents(first, 4, next));
    await reading;
    const done = seen.at(-1)!;
    expect(done.event).toBe("done");
    expect(JSON.parse(done.data)).toEqual({ reason: "WORKFLOW_EXECUTION_CONTINUED_AS_NEW", newRunId: next });
    expect(done.id).toMatch(/^4\.\d+$/);
    const thinkingId = seen.find((m) => m.event === "thinking")!.id!;
    // The next run has more events than the first by now (event ids start again at 1 in each run).
    await push(
      workflowId,
      range(1, 6).map((n) => historyEvent(next, n)),
    );

    // Reconnecting with done's id (what EventSource sends): the next run, all of it. Event id 4
    // alone would be taken for the next run's, and its events 1-4 never sent.
    const resumed = await collectHistoryStream((await open(workflowId, "", { "last-event-id": done.id! })).body!, 6);
    expect(resumed.workflow).toEqual([expect.objectContaining({ runId: next })]);
    expect(resumed.eventIds).toEqual(range(1, 6));
    // A thinking id of the first run resumes in the first run: the rest of it, and its end.
    const rest = await collectHistoryStream((await open(workflowId, "", { "last-event-id": thinkingId })).body!);
    expect(rest.workflow).toEqual([expect.objectContaining({ runId: first })]);
    expect(rest.eventIds).toEqual([3, 4]);
    expect(rest.done).toEqual([{ reason: "WORKFLOW_EXECUTION_CONTINUED_AS_NEW", newRunId: next }]);
    // Pinned to the first run, its done id is its end: 204, as before.
    const pinned = await call(`/workflow/${workflowId}/runs/${first}/history/stream`, {
      headers: { ...auth(), "last-event-id": done.id! },
    });
    expect(pinned.status).toBe(204);

    // The next run ends the workflow: reconnecting with its done id is 204, EventSource stops.
    await push(workflowId, [closeEvent(next, 7), finishedEvent(next)]);
    const ending: SseMessage[] = [];
    for await (const m of readSse((await open(workflowId, "", { "last-event-id": "6" })).body!)) ending.push(m);
    expect(ending.map((m) => `${m.event}:${m.id ?? ""}`)).toEqual(["workflow:", "history:7", expect.stringMatching(/^done:7\.\d+$/)]);
    expect((await open(workflowId, "", { "last-event-id": ending.at(-1)!.id! })).status).toBe(204);
  });

  it("an unpinned stream resumed after `done` of a run a reset is replacing: 503 until the reset's run is known, then that run from its start, never 204", async () => {
    const { workflowId, runId: first } = await createRunningRun(org.organizationId);
    const row = await env.DB.prepare("SELECT id FROM runs WHERE temporal_workflow_id = ?").bind(workflowId).first<{ id: string }>();
    await push(workflowId, [historyEvent(first, 1), historyEvent(first, 2)]);
    const followed = await open(workflowId);
    const seen: SseMessage[] = [];
    const reading = (async () => {
      for await (const m of readSse(followed.body!)) seen.push(m);
    })();
    // The reset route holds the run, and the host terminates it; the route has not recorded the reset's run yet.
    const stub = runStream(env, workflowId);
    expect(await stub.holdForReset({ organizationId: org.organizationId, workflowId, runUuid: row!.id })).toMatchObject({ ok: true });
    await push(workflowId, [historyEvent(first, 3, "EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED"), finishedEvent(first, "terminated")]);
    await reading;
    const done = seen.at(-1)!;
    expect([done.event, JSON.parse(done.data)]).toEqual(["done", { reason: "WORKFLOW_EXECUTION_TERMINATED" }]);

    // EventSource reconnects with done's id: the workflow goes on, so not 204 (which would stop it for good).
    const early = await open(workflowId, "", { "last-event-id": done.id! });
    expect(early.status).toBe(503);
    expect(early.headers.get("retry-after")).toBe("1");
    expect(((await early.json()) as OutputErrorBody).code).toBe("host_unavailable");
    // The relay brings the reset's run before its route records it: that run, from its first event.
    const next = crypto.randomUUID();
    await push(
      workflowId,
      range(1, 3).map((n) => historyEvent(next, n)),
    );
    const resumed = await collectHistoryStream((await open(workflowId, "", { "last-event-id": done.id! })).body!, 3);
    expect(resumed.workflow).toEqual([expect.objectContaining({ runId: next })]);
    expect(resumed.eventIds).toEqual([1, 2, 3]);
    // And once the route recorded it, the same.
    await push(workflowId, [runResetEvent(next, first)]);
    expect((await collectHistoryStream((await open(workflowId, "", { "last-event-id": done.id! })).body!, 3)).eventIds).toEqual([1, 2, 3]);
  });

  it("an unknown run is 404 JSON before any stream opens; a bad Last-Event-ID is 400", async () => {
    const res = await open(`two_steps-${crypto.randomUUID()}`);
    expect(res.status).toBe(404);
    expect(res.headers.get("content-type")).toContain("application/json");
    expect(((await res.json()) as OutputErrorBody).code).toBe("run_not_found");
    const { workflowId } = await createRunningRun(org.organizationId);
    const bad = await open(workflowId, "", { "last-event-id": "abc" });
    expect(bad.status).toBe(400);
  });

  it("a query that is not what it says is 400 naming the parameter: includePayloads other than true/false, a repeat", async () => {
    const { workflowId } = await createRunningRun(org.organizationId);
    for (const [query, path] of [
      ["?includePayloads=1", "includePayloads"],
      ["?includePayloads=TRUE", "includePayloads"],
      ["?includePayloads=true&includePayloads=false", "includePayloads"],
      ["?lastEventId=1&lastEventId=500", "lastEventId"],
    ]) {
      const res = await open(workflowId, query);
      expect(res.status, query).toBe(400);
      const body = (await res.json()) as OutputErrorBody & { issues: { path: string }[] };
      expect(body.code, query).toBe("invalid_request");
      expect(
        body.issues.map((i) => i.path),
        query,
      ).toEqual([path]);
    }
  });

  it("another organization's run is 404, never its events", async () => {
    const other = await seedOrganization("Other org");
    const { workflowId } = await createRunningRun(org.organizationId);
    const res = await call(`/workflow/${workflowId}/history/stream`, { headers: { authorization: `Bearer ${other.key}` } });
    expect(res.status).toBe(404);
  });
});

describe("run-scoped stream tokens", () => {
  let org: Awaited<ReturnType<typeof seedOrganization>>;
  beforeAll(async () => {
    org = await seedOrganization();
    await seedCatalog();
  });

  it("security: the Worker's invocation logs, which record each request's URL (and so its ?token=), are off in wrangler.toml", () => {
    const logs = /^\[observability\.logs\]\s*$([\s\S]*?)(?=^\[|(?![\s\S]))/m.exec(wranglerToml)?.[1] ?? "";
    expect(logs).toMatch(/^invocation_logs\s*=\s*false\s*$/m);
  });

  it("opens the stream of its own run with ?token=", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, [historyEvent(runId, 1), closeEvent(runId, 2), finishedEvent(runId)]);
    const { token } = await mintStreamToken(STREAM_SECRET, { organizationId: org.organizationId, apiKeyId: org.keyId, workflowId });
    const res = await call(`/workflow/${workflowId}/history/stream?token=${token}`);
    expect(res.status).toBe(200);
    expect((await collectHistoryStream(res.body!)).eventIds).toEqual([1, 2]);
  });

  it("security: nothing a ?token= URL answers is kept by a cache on the way: the stream, its 204 at the end and its errors are no-store", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, [historyEvent(runId, 1), closeEvent(runId, 2), finishedEvent(runId)]);
    const { token } = await mintStreamToken(STREAM_SECRET, { organizationId: org.organizationId, apiKeyId: org.keyId, workflowId });
    const answers = [
      // The streams: their first frame is a fresh token.
      await call(`/workflow/${workflowId}/history/stream?token=${token}`),
      await call(`/runs/${workflowId}/events?token=${token}`),
      // Reconnects after the end: 204.
      await call(`/workflow/${workflowId}/history/stream?token=${token}`, { headers: { "last-event-id": "2" } }),
      await call(`/runs/${workflowId}/events?token=${token}`, { headers: { "last-event-id": "999" } }),
      // Errors: a token that is not one, a malformed cursor.
      await call(`/workflow/${workflowId}/history/stream?token=${token}x`),
      await call(`/runs/${workflowId}/events?token=${token}`, { headers: { "last-event-id": "abc" } }),
    ];
    expect(answers.map((res) => [res.status, res.headers.get("cache-control")?.split(",")[0]])).toEqual([
      [200, "no-store"],
      [200, "no-store"],
      [204, "no-store"],
      [204, "no-store"],
      [401, "no-store"],
      [400, "no-store"],
    ]);
    await Promise.all(answers.map((res) => res.body?.cancel()));
  });

  it("is refused on another run, after it expires, when forged, and on non-stream routes", async () => {
    const a = await createRunningRun(org.organizationId);
    const b = await createRunningRun(org.organizationId);
    const { token } = await mintStreamToken(STREAM_SECRET, {
      organizationId: org.organizationId,
      apiKeyId: org.keyId,
      workflowId: a.workflowId,
    });
    expect((await call(`/workflow/${b.workflowId}/history/stream?token=${token}`)).status).toBe(401);

    const expired = await mintStreamToken(
      STREAM_SECRET,
      { organizationId: org.organizationId, apiKeyId: org.keyId, workflowId: a.workflowId },
      Date.now() - 3_600_000,
    );
    const res = await call(`/workflow/${a.workflowId}/history/stream?token=${expired.token}`);
    expect(res.status).toBe(401);
    expect(((await res.json()) as OutputErrorBody).code).toBe("unauthorized");

    const forged = await mintStreamToken("not-the-stream-token-secret-but-long-enough", {
      organizationId: org.organizationId,
      apiKeyId: org.keyId,
      workflowId: a.workflowId,
    });
    expect((await call(`/workflow/${a.workflowId}/history/stream?token=${forged.token}`)).status).toBe(401);

    expect((await call(`/workflow/${a.workflowId}/status?token=${token}`)).status).toBe(401);
    // Only the stream's GET (and HEAD): any other method on its path is no stream, and the token
    // neither authenticates it nor spends the run's rate limit on it.
    for (const method of ["POST", "PUT", "DELETE"]) {
      const other = await call(`/workflow/${a.workflowId}/history/stream?token=${token}`, { method });
      expect([method, other.status, other.headers.get("x-ratelimit-remaining")]).toEqual([method, 401, null]);
    }
  });

  it("is refused when signed with the secret but without an expiry, an issue time or the minting key, or with another organization's key (never minted by the edge)", async () => {
    const a = await createRunningRun(org.organizationId);
    const elsewhere = await seedOrganization();
    const unsigned = (claims: Record<string, unknown> = { org: org.organizationId, key: org.keyId }) =>
      new SignJWT(claims)
        .setProtectedHeader({ alg: "HS256" })
        .setIssuer("outrider")
        .setAudience("outrider:run-stream")
        .setSubject(a.workflowId);
    const secret = new TextEncoder().encode(STREAM_SECRET);
    const variants = {
      "no exp": await unsigned().setIssuedAt().sign(secret),
      "no iat": await unsigned().setExpirationTime("5m").sign(secret),
      // Before the key claim, a token could not be revoked: its renewals went on for ever.
      "no key": await unsigned({ org: org.organizationId }).setIssuedAt().setExpirationTime("5m").sign(secret),
      "another organization's key": await unsigned({ org: org.organizationId, key: elsewhere.keyId })
        .setIssuedAt()
        .setExpirationTime("5m")
        .sign(secret),
      both: await unsigned().setIssuedAt().setExpirationTime("5m").sign(secret),
    };
    const statuses: Record<string, number> = {};
    for (const [what, token] of Object.entries(variants)) {
      const res = await call(`/workflow/${a.workflowId}/history/stream?token=${token}`);
      statuses[what] = res.status;
      await res.body?.cancel();
    }
    expect(statuses).toEqual({ "no exp": 401, "no iat": 401, "no key": 401, "another organization's key": 401, both: 200 });
  });

  it("every refusal is a 401 with a WWW-Authenticate challenge (RFC 9110), which CORS lets a page read", async () => {
    const a = await createRunningRun(org.organizationId);
    const b = await createRunningRun(org.organizationId);
    const { token } = await mintStreamToken(STREAM_SECRET, {
      organizationId: org.organizationId,
      apiKeyId: org.keyId,
      workflowId: a.workflowId,
    });
    const forged = await mintStreamToken("not-the-stream-token-secret-but-long-enough", {
      organizationId: org.organizationId,
      apiKeyId: org.keyId,
      workflowId: a.workflowId,
    });
    for (const path of [
      `/workflow/${b.workflowId}/history/stream?token=${token}`,
      `/workflow/${a.workflowId}/history/stream?token=${forged.token}`,
      `/runs/${b.workflowId}/events?token=${token}`,
      `/runs/${a.workflowId}/events?token=${forged.token}`,
      `/runs/${a.workflowId}/events`,
    ]) {
      const res = await call(path, { headers: { origin: "https://app.example" } });
      expect(res.status, path).toBe(401);
      expect(res.headers.get("www-authenticate"), path).toMatch(/^Bearer realm="outrider"/);
      expect(res.headers.get("access-control-expose-headers"), path).toContain("www-authenticate");
    }
  });

  it("security: a token stops opening streams once the API key that minted it is revoked (as the key does, within its cache)", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, [historyEvent(runId, 1), closeEvent(runId, 2), finishedEvent(runId)]);
    const { key, keyId } = await createKey(org.organizationId);
    const minted = await call(`/workflow/${workflowId}/stream-token`, { method: "POST", headers: { authorization: `Bearer ${key}` } });
    const { token } = (await minted.json()) as { token: string };
    const open = () => call(`/workflow/${workflowId}/history/stream?token=${token}`);
    const before = await open();
    expect(before.status).toBe(200);
    await before.body?.cancel();
    await env.DB.prepare("UPDATE api_keys SET revoked_at = ? WHERE id = ?").bind(new Date().toISOString(), keyId).run();
    clearApiKeyCache(); // as if the key's 30 s in this isolate's cache had passed
    const after = await open();
    expect(after.status).toBe(401);
    expect(((await after.json()) as OutputErrorBody).message).toContain("revoked");
    // The run viewer's stream too.
    expect((await call(`/runs/${workflowId}/events?token=${token}`)).status).toBe(401);
  });

  it("security: an open stream ends once the API key that opened it, or minted its token, is revoked; with an unauthorized event", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, [historyEvent(runId, 1)]);
    const { key, keyId } = await createKey(org.organizationId);
    const minted = await call(`/workflow/${workflowId}/stream-token`, { method: "POST", headers: { authorization: `Bearer ${key}` } });
    const { token } = (await minted.json()) as { token: string };
    const streams = [
      await call(`/workflow/${workflowId}/history/stream`, { headers: { authorization: `Bearer ${key}` } }),
      await call(`/workflow/${workflowId}/history/stream?token=${token}`),
      await call(`/runs/${workflowId}/events?token=${token}`),
    ];
    for (const res of streams) expect(res.status).toBe(200);
    await env.DB.prepare("UPDATE api_keys SET revoked_at = ? WHERE id = ?").bind(new Date().toISOString(), keyId).run();
    clearApiKeyCache(); // as if the key's 30 s in this isolate's cache had passed
    // Keep-alives here come every 200 ms (SSE_KEEPALIVE_MS): each asks whether the key still works.
    const ends = await Promise.all(
      streams.map(async (res) => {
        const events: Array<{ event: string; data: string }> = [];
        for await (const message of readSse(res.body!)) events.push({ event: message.event, data: message.data });
        return events.at(-1);
      }),
    );
    for (const last of ends) {
      expect(last?.event).toBe("server_error");
      expect(JSON.parse(last!.data)).toMatchObject({ message: expect.stringContaining("revoked") });
    }
    expect(JSON.parse(ends[0]!.data)).toMatchObject({ error: "UnauthorizedError", code: "unauthorized", workflowId, runId });
    // Only that key's streams end: the organization's other key still opens the run's stream.
    const other = await call(`/workflow/${workflowId}/history/stream`, { headers: { authorization: `Bearer ${org.key}` } });
    expect(other.status).toBe(200);
    await other.body?.cancel();
  });

  it("security: a repeated ?token= is 400, not the first one's stream", async () => {
    const { workflowId } = await createRunningRun(org.organizationId);
    const { token } = await mintStreamToken(STREAM_SECRET, { organizationId: org.organizationId, apiKeyId: org.keyId, workflowId });
    const forged = await mintStreamToken("not-the-stream-token-secret-but-long-enough", {
      organizationId: org.organizationId,
      apiKeyId: org.keyId,
      workflowId,
    });
    const res = await call(`/workflow/${workflowId}/history/stream?token=${token}&token=${forged.token}`);
    expect(res.status).toBe(400);
    expect(((await res.json()) as OutputErrorBody).code).toBe("invalid_request");
  });

  it("POST /workflow/:id/stream-token mints a working token with an API key", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, [historyEvent(runId, 1), closeEvent(runId, 2), finishedEvent(runId)]);
    const minted = await call(`/workflow/${workflowId}/stream-token`, { method: "POST", headers: { authorization: `Bearer ${org.key}` } });
    expect(minted.status).toBe(200);
    const { token, expiresAt } = (await minted.json()) as { token: string; expiresAt: string };
    expect(new Date(expiresAt).getTime()).toBeGreaterThan(Date.now());
    expect((await call(`/workflow/${workflowId}/history/stream?token=${token}`)).status).toBe(200);
    // A token cannot mint tokens.
    expect((await call(`/workflow/${workflowId}/stream-token?token=${token}`, { method: "POST" })).status).toBe(401);
  });

  it("STREAM_TOKEN_SECRET rotates as the other secrets do: with `new,old` tokens are signed with the new value and those of either open streams; once old is dropped its tokens open nothing", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, [historyEvent(runId, 1), closeEvent(runId, 2), finishedEvent(runId)]);
    const NEW = `rotated-${STREAM_SECRET}`;
    const withSecret = (secret: string, path: string, init: RequestInit = {}) =>
      app.fetch(
        new Request(new URL(path, "http://edge.test"), init),
        { ...env, STREAM_TOKEN_SECRET: secret } as Env,
        createExecutionContext(),
      );
    const claims = { organizationId: org.organizationId, apiKeyId: org.keyId, workflowId };
    const { token: old } = await mintStreamToken(STREAM_SECRET, claims);

    const opened = await withSecret(`${NEW},${STREAM_SECRET}`, `/workflow/${workflowId}/history/stream?token=${old}`);
    expect(opened.status).toBe(200);
    await opened.body?.cancel();
    const minted = await withSecret(`${NEW},${STREAM_SECRET}`, `/workflow/${workflowId}/stream-token`, {
      method: "POST",
      headers: { authorization: `Bearer ${org.key}` },
    });
    const { token } = (await minted.json()) as { token: string };
    expect(await verifyStreamToken(NEW, token)).toMatchObject({ workflowId });
    expect(await verifyStreamToken(STREAM_SECRET, token)).toBeNull();

    expect((await withSecret(NEW, `/workflow/${workflowId}/history/stream?token=${old}`)).status).toBe(401);
    const fresh = await withSecret(NEW, `/workflow/${workflowId}/history/stream?token=${token}`);
    expect(fresh.status).toBe(200);
    await fresh.body?.cancel();
  });

  it("security: a STREAM_TOKEN_SECRET holding a value shorter than MIN_SECRET_LENGTH (a guessable HS256 key) mints and opens nothing: 500 internal_error", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, [historyEvent(runId, 1), closeEvent(runId, 2), finishedEvent(runId)]);
    const short = "s".repeat(MIN_SECRET_LENGTH - 1);
    const claims = { organizationId: org.organizationId, apiKeyId: org.keyId, workflowId };
    // A token as an attacker who guessed the short secret offline would make it.
    const forged = await new SignJWT({ org: org.organizationId, key: org.keyId })
      .setProtectedHeader({ alg: "HS256" })
      .setIssuer("outrider")
      .setAudience("outrider:run-stream")
      .setSubject(workflowId)
      .setIssuedAt()
      .setExpirationTime("5m")
      .sign(new TextEncoder().encode(short));
    await expect(mintStreamToken(short, claims)).rejects.toThrow(/STREAM_TOKEN_SECRET.*32 characters/);
    await expect(verifyStreamToken(`${STREAM_SECRET},${short}`, forged)).rejects.toThrow(/STREAM_TOKEN_SECRET/);
    const logged = vi.spyOn(console, "error").mockImplementation(() => undefined);
    try {
      for (const setting of [short, `${STREAM_SECRET},${short}`]) {
        const withSecret = (path: string, init: RequestInit = {}) =>
          app.fetch(
            new Request(new URL(path, "http://edge.test"), init),
            { ...env, STREAM_TOKEN_SECRET: setting } as Env,
            createExecutionContext(),
          );
        const opened = await withSecret(`/workflow/${workflowId}/history/stream?token=${forged}`);
        expect(opened.status).toBe(500);
        expect(((await opened.json()) as OutputErrorBody).code).toBe("internal_error");
        const minted = await withSecret(`/workflow/${workflowId}/stream-token`, {
          method: "POST",
          headers: { authorization: `Bearer ${org.key}` },
        });
        expect(minted.status).toBe(500);
        expect(((await minted.json()) as OutputErrorBody).code).toBe("internal_error");
      }
      for (const args of logged.mock.calls) expect(args.join(" ")).not.toContain(short);
    } finally {
      logged.mockRestore();
    }
  });
});

describe("CORS", () => {
  it("answers a preflight from a configured origin, on any route", async () => {
    const res = await preflight("/workflow/start", "POST", "authorization,content-type");
    expect(res.status).toBe(204);
    expect(res.headers.get("access-control-allow-origin")).toBe("https://app.example");
    expect(res.headers.get("access-control-allow-headers")?.toLowerCase()).toContain("authorization");
    // The methods the API has, and never credentials (no cookies are read: EventSource goes
    // without withCredentials, its stream token in the URL).
    expect(res.headers.get("access-control-allow-methods")?.split(",").sort()).toEqual(["DELETE", "GET", "OPTIONS", "PATCH", "POST"]);
    expect(res.headers.get("access-control-allow-credentials")).toBeNull();
    const actual = await call("/health", { headers: { origin: "https://app.example" } });
    expect(actual.headers.get("access-control-allow-credentials")).toBeNull();
  });

  it("sets the origin on actual responses, errors included, and ignores unknown origins", async () => {
    const ok = await call("/health", { headers: { origin: "https://other.example" } });
    expect(ok.headers.get("access-control-allow-origin")).toBe("https://other.example");
    const err = await call("/workflow/start", { method: "POST", headers: { origin: "https://app.example" } });
    expect(err.status).toBe(401);
    expect(err.headers.get("access-control-allow-origin")).toBe("https://app.example");
    const stranger = await call("/health", { headers: { origin: "https://evil.example" } });
    expect(stranger.headers.get("access-control-allow-origin")).toBeNull();
  });

  it("a page on another origin can read every answer of a stream (EventSource takes an unreadable one for a network error and reconnects for ever): the stream, its 204, a 401 for an expired token, a 400, and the preflight of a reconnect with Last-Event-ID", async () => {
    const org = await seedOrganization();
    await seedCatalog();
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, [historyEvent(runId, 1), closeEvent(runId, 2), finishedEvent(runId)]);
    const claims = { organizationId: org.organizationId, apiKeyId: org.keyId, workflowId };
    const { token } = await mintStreamToken(STREAM_SECRET, claims);
    const expired = (await mintStreamToken(STREAM_SECRET, claims, Date.now() - 3_600_000)).token;
    const page = { origin: "https://app.example", accept: "text/event-stream" };
    const stream = `/workflow/${workflowId}/history/stream`;
    const answers = [
      await call(`${stream}?token=${token}`, { headers: page }),
      await call(`${stream}?token=${token}`, { headers: { ...page, "last-event-id": "2" } }),
      await call(`${stream}?token=${expired}`, { headers: { ...page, "last-event-id": "1" } }),
      await call(`${stream}?token=${token}`, { headers: { ...page, "last-event-id": "x" } }),
      await call(`/runs/${workflowId}/events?token=${expired}`, { headers: page }),
    ];
    expect(answers.map((res) => [res.status, res.headers.get("access-control-allow-origin")])).toEqual([
      [200, "https://app.example"],
      [204, "https://app.example"],
      [401, "https://app.example"],
      [400, "https://app.example"],
      [401, "https://app.example"],
    ]);
    await Promise.all(answers.map((res) => res.body?.cancel()));
    const reconnect = await preflight(`${stream}?token=${token}`, "GET", "last-event-id");
    expect(reconnect.status).toBe(204);
    expect(reconnect.headers.get("access-control-allow-origin")).toBe("https://app.example");
    expect(reconnect.headers.get("access-control-allow-headers")?.toLowerCase().split(",")).toContain("last-event-id");
  });

  it("security: the admin API and the host's signed routes answer no CORS, preflight or not (no browser calls them)", async () => {
    for (const path of ["/admin/v1/organizations", "/internal/run-events"]) {
      const asked = await preflight(path, "POST", "authorization");
      expect(asked.headers.get("access-control-allow-origin"), path).toBeNull();
      const actual = await call(path, { method: "POST", headers: { origin: "https://app.example" } });
      expect(actual.headers.get("access-control-allow-origin"), path).toBeNull();
    }
  });
});

async function readHistoryEvents(res: Response): Promise<Array<Record<string, unknown>>> {
  const events: Array<Record<string, unknown>> = [];
  for await (const message of readSse(res.body!)) {
    if (message.event === "history") events.push(...(JSON.parse(message.data) as Array<Record<string, unknown>>));
    if (message.event === "done") break;
  }
  return events;
}

describe("thinking and attributes in the run log", () => {
  it("thinking text streams in log order between history batches, also on replay after Last-Event-ID", async () => {
    const org = await seedOrganization();
    await seedCatalog();
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    const thinking = (n: number, text: string) => ({
      sourceKey: `thinking:${runId}:5:1:${n}`,
      type: "thinking",
      at: new Date().toISOString(),
      data: { runId, activityId: "5", stepName: "askModel", attempt: 1, text },
    });
    await push(workflowId, [historyEvent(runId, 1), historyEvent(runId, 2)]);
    await push(workflowId, [thinking(1, "Reading "), thinking(2, "the request.")]);
    await push(workflowId, [thinking(2, "the request.")]); // redelivered: dropped
    await push(workflowId, [historyEvent(runId, 3), closeEvent(runId, 4), finishedEvent(runId)]);

    const frames = async (headers: Record<string, string>) => {
      const out: string[] = [];
      const res = await call(`/workflow/${workflowId}/history/stream`, { headers: { authorization: `Bearer ${org.key}`, ...headers } });
      for await (const m of readSse(res.body!)) {
        out.push(m.event === "thinking" ? `thinking:${(JSON.parse(m.data) as { text: string }).text}` : `${m.event}:${m.id ?? ""}`);
        if (m.event === "done") break;
      }
      return out;
    };
    const done = expect.stringMatching(/^done:4\.\d+$/);
    expect(await frames({})).toEqual(["workflow:", "history:2", "thinking:Reading ", "thinking:the request.", "history:4", done]);
    expect(await frames({ "last-event-id": "2" })).toEqual(["workflow:", "thinking:Reading ", "thinking:the request.", "history:4", done]);
    expect(await frames({ "last-event-id": "3" })).toEqual(["workflow:", "history:4", done]);
  });
});

describe("resume after thinking (security: exact replay, no duplicates)", () => {
  it("every history and thinking frame has an id, and Last-Event-ID resumes exactly after it", async () => {
    const org = await seedOrganization();
    await seedCatalog();
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, [historyEvent(runId, 1), historyEvent(runId, 2)]);
    await push(workflowId, [thinkingEvent(runId, 1, "Reading "), thinkingEvent(runId, 2, "the request.")]);
    await push(workflowId, [historyEvent(runId, 3)]);
    await push(workflowId, [thinkingEvent(runId, 3, "Now the answer."), thinkingEvent(runId, 4, "Done.")]);
    await push(workflowId, [closeEvent(runId, 4), finishedEvent(runId)]);
    const open = (lastEventId?: string) =>
      call(`/workflow/${workflowId}/history/stream`, {
        headers: { authorization: `Bearer ${org.key}`, ...(lastEventId ? { "last-event-id": lastEventId } : {}) },
      });
    const { frames, resumes } = await expectExactResume(open, ["workflow", "done"]);
    expect(frames.map((f) => `${f.event}:${f.id ?? ""}`)).toEqual([
      "workflow:",
      "history:2",
      expect.stringMatching(/^thinking:2\.\d+$/),
      expect.stringMatching(/^thinking:2\.\d+$/),
      "history:3",
      expect.stringMatching(/^thinking:3\.\d+$/),
      expect.stringMatching(/^thinking:3\.\d+$/),
      "history:4",
      expect.stringMatching(/^done:4\.\d+$/),
    ]);
    expect(resumes).toBe(7);
    // `done` has an id too (of ours): an EventSource that reconnects after it is told the run is over.
    expect((await open(frames.at(-1)!.id!)).status).toBe(204);
    // The id also works as ?lastEventId=, and a malformed composite id is 400.
    const thinkingId = frames[3]!.id!;
    const viaQuery = await call(`/workflow/${workflowId}/history/stream?lastEventId=${thinkingId}`, {
      headers: { authorization: `Bearer ${org.key}` },
    });
    expect(viaQuery.status).toBe(200);
    await viaQuery.body!.cancel();
    for (const bad of ["2.", ".5", "2.5.1", "2.x", "-1.2"]) {
      expect((await open(bad)).status, bad).toBe(400);
    }
  });

  it("a thinking id sent on a live stream resumes it exactly (thinking arriving after the client left included)", async () => {
    const org = await seedOrganization();
    await seedCatalog();
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, [historyEvent(runId, 1), thinkingEvent(runId, 1, "one")]);
    const first = await call(`/workflow/${workflowId}/history/stream`, { headers: { authorization: `Bearer ${org.key}` } });
    let lastId = "";
    const seen: string[] = [];
    for await (const m of readSse(first.body!)) {
      if (m.id) lastId = m.id;
      if (m.event === "thinking") seen.push((JSON.parse(m.data) as { text: string }).text);
      if (m.event === "thinking") break; // the client drops right after the thinking text
    }
    await push(workflowId, [
      thinkingEvent(runId, 2, "two"),
      historyEvent(runId, 2),
      thinkingEvent(runId, 3, "three"),
      closeEvent(runId, 3),
      finishedEvent(runId),
    ]);
    const resumed = await call(`/workflow/${workflowId}/history/stream`, {
      headers: { authorization: `Bearer ${org.key}`, "last-event-id": lastId },
    });
    for await (const m of readSse(resumed.body!)) {
      if (m.event === "thinking") seen.push((JSON.parse(m.data) as { text: string }).text);
    }
    expect(lastId).toMatch(/^1\.\d+$/);
    expect(seen).toEqual(["one", "two", "three"]);
  });
});
