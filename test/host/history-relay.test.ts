/**
 * The host's history relay (host/history-relay.ts) over real Temporal, with a stand-in edge that
 * records what it is handed: every event of the run once and in order, the outcome last and sent
 * without the push window, a coalescing pause after each page.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import type { Client } from "@temporalio/client";
import proto from "@temporalio/proto"; // CommonJS: no named ESM exports at run time
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EdgeClient } from "../../host/edge-client.ts";
import { HistoryRelay, RELAY_COALESCE_MS, relayRetryDelay } from "../../host/history-relay.ts";
import { serializeHistoryEvent } from "../../host/history-serialization.ts";
import { ALWAYS_FAILS_MESSAGE } from "../../host/workflows/examples.ts";
import type { RunEvent, RunEventPush } from "../../src/shared/host-api.ts";
import { ALWAYS_FAILS_ERROR_DETAILS } from "../support/always-fails.ts";
import { startTestWorker, type TestWorker } from "./temporal-worker.ts";

const SECRET = "relay-test-secret-long-enough-for-hmac-sha256"; // test-only
const TASK_QUEUE = `relay-test-${process.pid}`;

let client: Client;
let testWorker: TestWorker;

beforeAll(async () => {
  // The workflows' own step events go to a closed port; the relay's pushes go to the recorder.
  testWorker = await startTestWorker(SECRET, TASK_QUEUE);
  client = testWorker.client;
});

afterAll(() => testWorker?.stop());

interface Push {
  workflowId: string;
  events: RunEvent[];
  now: boolean;
}

/** An edge that records each push and takes `pushMs` to accept it. */
function recordingEdge(pushMs: number) {
  const pushes: Push[] = [];
  const edge = {
    async pushRunEvents(workflowId: string, events: RunEvent[], options: { now?: boolean } = {}) {
      pushes.push({ workflowId, events, now: options.now ?? false });
      await new Promise((r) => setTimeout(r, pushMs));
    },
    // Holds nothing back: the bound on what the EdgeClient holds is tested below, with a real one.
    hasRoomFor: () => true,
  } as unknown as EdgeClient;
  return { edge, pushes };
}

/** Relays one run of `workflow` to the recorder; resolves with the pushes and the pauses the relay took. */
async function relayOneRun(workflow: string, args: unknown[], pushMs: number) {
  const { edge, pushes } = recordingEdge(pushMs);
  const pauses: number[] = [];
  const relay = new HistoryRelay(client, edge, TASK_QUEUE, async (ms) => {
    pauses.push(ms);
    await new Promise((r) => setTimeout(r, ms));
  });
  const workflowId = `${workflow}-${crypto.randomUUID()}`;
  const handle = await client.workflow.start(workflow, { taskQueue: TASK_QUEUE, workflowId, args });
  relay.follow(workflowId, handle.firstExecutionRunId);
  await handle.result().catch(() => undefined);
  // The relay lets go of the run once it has pushed the outcome.
  for (let i = 0; i < 200 && relay.size > 0; i++) await new Promise((r) => setTimeout(r, 50));
  expect(relay.size).toBe(0);
  const history = (await handle.fetchHistory()).events!.map((e) => String(e.eventId));
  return { workflowId, runId: handle.firstExecutionRunId, pushes, pauses, history };
}

describe("history relay: the caller's Temporal call context", () => {
  it("a run followed from inside a request's deadline (a start's) is relayed to its end long after that deadline passed", async () => {
    const { edge, pushes } = recordingEdge(0);
    const relay = new HistoryRelay(client, edge, TASK_QUEUE, (ms) => new Promise((r) => setTimeout(r, ms)));
    const workflowId = `approval-${crypto.randomUUID()}`;
    // As the control API starts a run: inside withDeadline (and withAbortSignal), whose context
    // every Temporal call made from there on would inherit, the relay's long-polls too.
    const stop = new AbortController();
    const handle = await client.withAbortSignal(stop.signal, () =>
      client.withDeadline(Date.now() + 300, async () => {
        const started = await client.workflow.start("approval", { taskQueue: TASK_QUEUE, workflowId, args: [{ request: "late" }] });
        relay.follow(workflowId, started.firstExecutionRunId);
        return started;
      }),
    );
    stop.abort();
    await new Promise((r) => setTimeout(r, 800));
    await handle.signal("approve", { approvedBy: "ada" });
    await handle.result();
    for (let i = 0; i < 200 && relay.size > 0; i++) await new Promise((r) => setTimeout(r, 50));
    expect(relay.size).toBe(0);
    const types = pushes.flatMap((p) => p.events.map((e) => e.type));
    expect(types[types.length - 1]).toBe("run.finished");
    const history = (await handle.fetchHistory()).events!.map((e) => String(e.eventId));
    const relayed = pushes.flatMap((p) => p.events.flatMap((e) => (e.type === "history" ? [String(e.data.event.eventId)] : [])));
    expect(relayed).toEqual(history);
  }, 20_000);
});

/**
 * Starts a `two_steps` run, has `relay` follow it (with its run id, or without as after a host
 * restart), and waits for the relay to let go of it once its end is pushed, last: the history event
 * ids relayed, in the order pushed, and Temporal's.
 */
async function relayTwoStepsRun(relay: HistoryRelay, pushes: Push[], options: { withRunId: boolean }) {
  const workflowId = `two_steps-${crypto.randomUUID()}`;
  const handle = await client.workflow.start("two_steps", { taskQueue: TASK_QUEUE, workflowId, args: [{ text: "a b" }] });
  relay.follow(workflowId, options.withRunId ? handle.firstExecutionRunId : undefined);
  await handle.result();
  for (let i = 0; i < 200 && relay.size > 0; i++) await new Promise((r) => setTimeout(r, 50));
  expect(relay.size).toBe(0);
  const events = pushes.flatMap((p) => p.events);
  expect(events.at(-1)?.type).toBe("run.finished");
  return {
    relayed: events.filter((e) => e.type === "history").map((e) => String((e.data as { event: { eventId: string } }).event.eventId)),
    history: (await handle.fetchHistory()).events!.map((e) => String(e.eventId)),
  };
}

describe("history relay: failures", () => {
  it("a push the edge does not take in all its tries is tried again after a backoff, from the run's first page: the run's end still arrives", async () => {
    const pushes: Push[] = [];
    let refusals = 3;
    const edge = {
      async pushRunEvents(workflowId: string, events: RunEvent[], options: { now?: boolean } = {}) {
        // What EdgeClient does once its tries are used up: the push is rejected.
        if (refusals-- > 0) throw new Error("gave up pushing: edge answered 503");
        pushes.push({ workflowId, events, now: options.now ?? false });
      },
      hasRoomFor: () => true,
    } as unknown as EdgeClient;
    const pauses: number[] = [];
    const relay = new HistoryRelay(client, edge, TASK_QUEUE, async (ms) => {
      pauses.push(ms);
    });
    const { relayed, history } = await relayTwoStepsRun(relay, pushes, { withRunId: true });
    // Tried again from the run's first page: what the edge already has comes again (and is dropped there).
    expect([...new Set(relayed)]).toEqual(history);
    // Three failures in a row: three backoffs, doubling (with jitter).
    const backoffs = pauses.filter((ms) => ms >= 1_000);
    expect(backoffs).toHaveLength(3);
    expect(backoffs[1]!).toBeGreaterThanOrEqual(2_000);
    expect(backoffs[2]!).toBeGreaterThanOrEqual(4_000);
  });

  it("a long-poll (or a describe) that a connected but stuck Temporal never answers is given up past its limit and asked again: the run is still relayed whole", async () => {
    const { edge, pushes } = recordingEdge(0);
    const pauses: number[] = [];
    const relay = new HistoryRelay(
      client,
      edge,
      TASK_QUEUE,
      async (ms) => {
        pauses.push(ms);
      },
      undefined,
      { longPollMs: 300, callMs: 300 },
    );
    type Service = Record<string, (...args: unknown[]) => Promise<unknown>>;
    const service = client.workflowService as unknown as Service;
    const originals = { history: service.getWorkflowExecutionHistory!, describe: service.describeWorkflowExecution! };
    const stuck = { history: 0, describe: 0 };
    // The relay's first long-poll and describe are taken and never answered (calls that hang, not
    // ones that fail). Only the relay's: result() long-polls for the close event alone.
    const relays = (request: unknown) => {
      const { waitNewEvent, historyEventFilterType } = request as { waitNewEvent?: boolean; historyEventFilterType?: number };
      return waitNewEvent === true && !historyEventFilterType;
    };
    service.getWorkflowExecutionHistory = (...args) =>
      relays(args[0]) && stuck.history++ === 0 ? new Promise(() => {}) : originals.history.apply(service, args);
    service.describeWorkflowExecution = (...args) =>
      stuck.describe++ === 0 ? new Promise(() => {}) : originals.describe.apply(service, args);
    try {
      // No run id: the relay describes the workflow first.
      const { relayed, history } = await relayTwoStepsRun(relay, pushes, { withRunId: false });
      // The stuck long-poll is asked again from the same page: each event once.
      expect(relayed).toEqual(history);
      // Each stuck call was given up once, then backed off from.
      expect(stuck.describe).toBeGreaterThanOrEqual(2);
      expect(stuck.history).toBeGreaterThanOrEqual(2);
      expect(pauses.filter((ms) => ms >= 1_000)).toHaveLength(2);
    } finally {
      service.getWorkflowExecutionHistory = originals.history;
      service.describeWorkflowExecution = originals.describe;
    }
  }, 30_000);

  it("the backoff doubles from 1 s to at most 30 s, with up to half again of jitter", () => {
    expect([1, 2, 3, 6, 7, 20].map((n) => relayRetryDelay(n, () => 0))).toEqual([1_000, 2_000, 4_000, 30_000, 30_000, 30_000]);
    expect(relayRetryDelay(1, () => 0.999)).toBe(1_500);
  });
});

describe("history relay", () => {
  it("a failed run's run.finished carries Output's errorDetails, built as the client's result() words the failure", async () => {
    const { pushes } = await relayOneRun("always_fails", [{}], 0);
    const finished = pushes.flatMap((p) => p.events).find((e) => e.type === "run.finished");
    expect(finished?.data).toMatchObject({
      status: "failed",
      error: ALWAYS_FAILS_MESSAGE,
      errorDetails: ALWAYS_FAILS_ERROR_DETAILS,
    });
  });

  it("pushes every history event of a run once, in order, then run.finished last, in the same push as the close event", async () => {
    const { workflowId, runId, pushes, history } = await relayOneRun("two_steps", [{ text: "one two three" }], 0);
    expect(pushes.every((p) => p.workflowId === workflowId)).toBe(true);
    const events = pushes.flatMap((p) => p.events);
    const relayed = events.filter((e) => e.type === "history").map((e) => e.sourceKey);
    expect(relayed).toEqual(history.map((id) => `history:${runId}:${id}`));
    expect(events.at(-1)).toMatchObject({ type: "run.finished", data: { status: "completed" } });
    expect(events.filter((e) => e.type === "run.finished")).toHaveLength(1);
    const last = pushes.at(-1)!;
    expect(last.events.some((e) => e.type === "history" && e.sourceKey === `history:${runId}:${history.at(-1)}`)).toBe(true);
  });

  it("the push carrying the outcome goes out without the push window; the others keep it", async () => {
    const { pushes } = await relayOneRun("hello", [{ name: "Ada" }], 0);
    expect(pushes.at(-1)!.now).toBe(true);
    expect(pushes.slice(0, -1).every((p) => !p.now)).toBe(true);
  });

  it("pauses after each page it pushed, so the events of one workflow task come back together", async () => {
    const { pushes, pauses } = await relayOneRun("two_steps", [{ text: "a b" }], 5);
    // One pause after each page but the last (the close ends the relay); none before a page came.
    expect(pauses).toHaveLength(pushes.length - 1);
    expect(pauses.every((ms) => ms === RELAY_COALESCE_MS)).toBe(true);
  });
});

/**
 * Heap and ArrayBuffer bytes once garbage is collected. V8 frees an ArrayBuffer's memory on a
 * background thread after the collection that found it dead, so one reading right after `gc()`
 * can still count buffers already let go of (a CI run counted 15 of the 30 pages). The lowest of
 * a few readings, each after a pause and another collection, counts only what is still held.
 */
async function settledMemory(gc: () => void): Promise<{ heapUsed: number; arrayBuffers: number }> {
  const least = { heapUsed: Number.POSITIVE_INFINITY, arrayBuffers: Number.POSITIVE_INFINITY };
  for (let round = 0; round < 5; round++) {
    gc();
    await new Promise((r) => setTimeout(r, 50));
    const now = process.memoryUsage();
    least.heapUsed = Math.min(least.heapUsed, now.heapUsed);
    least.arrayBuffers = Math.min(least.arrayBuffers, now.arrayBuffers);
  }
  return least;
}

describe("history relay: memory while the edge is down", () => {
  it("the pages handed to the EdgeClient and not yet taken stay under the relay's byte bound, however many runs it follows; once the edge is back, every run's history and end arrive", async () => {
    // A stand-in edge: 503 while down, else it takes every push.
    const state = { down: true, took: [] as RunEvent[] };
    const server: Server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        if (state.down) return void res.writeHead(503).end();
        const push = JSON.parse(Buffer.concat(chunks).toString()) as RunEventPush;
        for (const run of push.runs) state.took.push(...run.events);
        const accepted = push.runs.reduce((n, run) => n + run.events.length, 0);
        res
          .writeHead(200, { "content-type": "application/json" })
          .end(JSON.stringify({ runs: push.runs.length, accepted, duplicates: 0, dropped: 0 }));
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    // Tries that outlast the outage: what the relay hands over stays with the EdgeClient meanwhile.
    const edge = new EdgeClient(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, SECRET, () => undefined, 1_000_000, 5);
    // What the EdgeClient holds of the relay's pages, as JSON, at most.
    const held = { now: 0, peak: 0, largest: 0 };
    const push = edge.pushRunEvents.bind(edge);
    edge.pushRunEvents = (workflowId, events, options) => {
      const bytes = JSON.stringify(events).length;
      held.now += bytes;
      held.peak = Math.max(held.peak, held.now);
      held.largest = Math.max(held.largest, bytes);
      return push(workflowId, events, options).finally(() => (held.now -= bytes));
    };
    const bound = 300_000;
    const relay = new HistoryRelay(client, edge, TASK_QUEUE, undefined, bound);
    try {
      // Runs whose history is a page of about 200 KB (the name is in the input, the activity's
      // input and result, and the run's result): eight of them make 1.6 MB.
      const name = "n".repeat(50_000);
      const handles = await Promise.all(
        Array.from({ length: 8 }, async () => {
          const workflowId = `hello-${crypto.randomUUID()}`;
          const handle = await client.workflow.start("hello", { taskQueue: TASK_QUEUE, workflowId, args: [{ name }] });
          await handle.result();
          return handle;
        }),
      );
      const page = JSON.stringify((await handles[0]!.fetchHistory()).events!.map(serializeHistoryEvent)).length;
      expect(page).toBeGreaterThan(150_000);
      for (const handle of handles) relay.follow(handle.workflowId, handle.firstExecutionRunId);
      // Long enough for every run's relay to have read its page.
      await new Promise((r) => setTimeout(r, 3_000));
      expect(relay.size).toBe(handles.length);
      // Held: the bound at most (or one page, when a page alone is larger than the bound).
      expect(held.largest).toBeGreaterThan(page);
      expect(held.peak).toBeLessThanOrEqual(Math.max(bound, held.largest));
      state.down = false;
      for (let i = 0; i < 600 && relay.size > 0; i++) await new Promise((r) => setTimeout(r, 50));
      expect(relay.size).toBe(0);
      for (const handle of handles) {
        const runEvents = state.took.filter((e) => e.sourceKey.includes(handle.firstExecutionRunId));
        const history = (await handle.fetchHistory()).events!.map((e) => `history:${handle.firstExecutionRunId}:${String(e.eventId)}`);
        expect(new Set(runEvents.filter((e) => e.type === "history").map((e) => e.sourceKey))).toEqual(new Set(history));
        expect(
          state.took.some((e) => e.type === "run.finished" && (e.data as { runId: string }).runId === handle.firstExecutionRunId),
        ).toBe(true);
      }
    } finally {
      relay.stop();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
  }, 60_000);

  it("a relay holding off keeps nothing of the page it let go of while it waits for room: thirty runs waiting with a page of 1 MiB each hold no 30 MiB", async () => {
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    const utf8 = new TextEncoder();
    // Temporal as the relay sees it: each read is a page with a 1 MiB input, more to come.
    const temporal = {
      options: { namespace: "default" },
      // The relay's limits on its calls (withinDeadline) set these around each.
      withDeadline: (_deadline: number, fn: () => Promise<unknown>) => fn(),
      withAbortSignal: (_signal: AbortSignal, fn: () => Promise<unknown>) => fn(),
      workflowService: {
        getWorkflowExecutionHistory: async () => ({
          history: {
            events: [
              proto.temporal.api.history.v1.HistoryEvent.create({
                eventId: 1 as never,
                eventType: proto.temporal.api.enums.v1.EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
                workflowExecutionStartedEventAttributes: {
                  input: {
                    payloads: [
                      { metadata: { encoding: utf8.encode("json/plain") }, data: utf8.encode(JSON.stringify("i".repeat(1 << 20))) },
                    ],
                  },
                },
              }),
            ],
          },
          nextPageToken: new Uint8Array([1]),
        }),
      },
    } as unknown as Client;
    // An EdgeClient with no room: each relay waits for it, as the real one keeps its waiters.
    const waiting: unknown[] = [];
    const full = {
      hasRoomFor: () => false,
      roomFor: () => new Promise((wake) => waiting.push(wake)),
      pushRunEvents: () => Promise.reject(new Error("no room: never pushed")),
    } as unknown as EdgeClient;
    const before = await settledMemory(gc);
    const relay = new HistoryRelay(temporal, full, TASK_QUEUE);
    for (let i = 0; i < 30; i++) relay.follow(`held-off-${i}`, `run-${i}`);
    for (let i = 0; i < 100 && waiting.length < 30; i++) await new Promise((r) => setTimeout(r, 20));
    expect(waiting).toHaveLength(30);
    const after = await settledMemory(gc);
    relay.stop();
    expect(after.arrayBuffers - before.arrayBuffers).toBeLessThan(8 * 1024 * 1024);
    expect(after.heapUsed - before.heapUsed).toBeLessThan(8 * 1024 * 1024);
  });
});
