/**
 * The host's history relay (host/history-relay.ts) over real Temporal, with a stand-in edge that
 * records what it is handed: every event of the run once and in order, the outcome last and sent
 * without the push window, a coalescing pause after each page.
 */
import type { Client } from "@temporalio/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EdgeClient } from "../../host/edge-client.ts";
import { HistoryRelay, RELAY_COALESCE_MS, relayRetryDelay } from "../../host/history-relay.ts";
import { ALWAYS_FAILS_MESSAGE } from "../../host/workflows/examples.ts";
import type { RunEvent } from "../../src/shared/host-api.ts";
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
    } as unknown as EdgeClient;
    const pauses: number[] = [];
    const relay = new HistoryRelay(client, edge, TASK_QUEUE, async (ms) => {
      pauses.push(ms);
    });
    const workflowId = `two_steps-${crypto.randomUUID()}`;
    const handle = await client.workflow.start("two_steps", { taskQueue: TASK_QUEUE, workflowId, args: [{ text: "a b" }] });
    relay.follow(workflowId, handle.firstExecutionRunId);
    await handle.result();
    for (let i = 0; i < 200 && relay.size > 0; i++) await new Promise((r) => setTimeout(r, 50));
    expect(relay.size).toBe(0);
    const events = pushes.flatMap((p) => p.events);
    expect(events.at(-1)?.type).toBe("run.finished");
    const history = (await handle.fetchHistory()).events!.map((e) => String(e.eventId));
    const relayed = [
      ...new Set(events.filter((e) => e.type === "history").map((e) => (e.data as { event: { eventId: string } }).event.eventId)),
    ];
    expect(relayed).toEqual(history);
    // Three failures in a row: three backoffs, doubling (with jitter).
    const backoffs = pauses.filter((ms) => ms >= 1_000);
    expect(backoffs).toHaveLength(3);
    expect(backoffs[1]!).toBeGreaterThanOrEqual(2_000);
    expect(backoffs[2]!).toBeGreaterThanOrEqual(4_000);
  });

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
