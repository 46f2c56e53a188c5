/**
 * The host's batching of run events (host/edge-client.ts) against a stand-in edge that records
 * what it gets and answers as told: pushes across runs, order, refusals retried and never dropped.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { EdgeClient, MAX_PUSH_BYTES, MAX_PUSH_EVENTS, SPLIT_PUSHES_AT_ONCE } from "../../host/edge-client.ts";
import { RunEventJournal } from "../../host/run-event-journal.ts";
import type { RunEvent, RunEventPush } from "../../src/shared/host-api.ts";
import { verifyRequest } from "../../src/shared/signing.ts";
import { until } from "../support/until.ts";

const SECRET = "edge-client-test-secret-long-enough-for-hmac"; // test-only

interface Received {
  path: string;
  body: RunEventPush;
  /** When the stand-in edge got the request, and when it answered, on one counter of both. */
  arrived: number;
  answered: number;
}

let server: Server | undefined;
afterEach(() => new Promise<void>((r) => (server ? server.close(() => r()) : r())));

/** What the edge answers to a push it recorded (a catalog publish too, whose body is no run event push). */
function edgeAnswer(push: RunEventPush): unknown {
  const catalog = push as unknown as { workflows?: unknown[] };
  if (catalog.workflows) return { published: catalog.workflows.length };
  return { runs: push.runs.length, accepted: push.runs.reduce((n, r) => n + r.events.length, 0), duplicates: 0, dropped: 0 };
}

/**
 * A stand-in edge: `answer` decides each response status from the push; `accepted` is the body of
 * a 200; each answer waits `delayMs`, so that pushes overlap when the client lets them.
 */
async function fakeEdge(
  answer: (push: RunEventPush, n: number) => number,
  accepted: (push: RunEventPush) => unknown = edgeAnswer,
  delayMs: number | ((push: RunEventPush) => number) = 0,
  /** The body of a non-200 answer. */
  failure: (push: RunEventPush, status: number) => unknown = () => ({ error: { code: "invalid_request", message: "bad event" } }),
) {
  const received: Received[] = [];
  const statuses: number[] = [];
  let clock = 0;
  let arrivals = 0;
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    const arrived = ++clock;
    arrivals++;
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", async () => {
      const body = Buffer.concat(chunks);
      const delay = typeof delayMs === "number" ? delayMs : delayMs(JSON.parse(body.toString()) as RunEventPush);
      if (delay > 0) await new Promise((r) => setTimeout(r, delay));
      const verdict = await verifyRequest(
        [SECRET],
        req.method!,
        req.url!,
        new Headers(req.headers as Record<string, string>),
        new Uint8Array(body),
      );
      const push = JSON.parse(body.toString()) as RunEventPush;
      const status = verdict.ok ? answer(push, received.length) : 401;
      received.push({ path: req.url!, body: push, arrived, answered: ++clock });
      statuses.push(status);
      res
        .writeHead(status, { "content-type": "application/json" })
        .end(JSON.stringify(status === 200 ? accepted(push) : failure(push, status)));
    });
  });
  await new Promise<void>((r) => server!.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server!.address() as AddressInfo).port}`,
    received,
    statuses,
    /** Pushes that have reached the edge, answered or not. */
    arrivals: () => arrivals,
  };
}

const started = (runId: string): RunEvent => ({
  sourceKey: `run:${runId}:started`,
  type: "run.started",
  at: new Date().toISOString(),
  data: { runId },
});

/** A history event of `runId` carrying `bytes` of payload: pushes large enough to go out in parts. */
const historyOfSize = (runId: string, sourceKey: string, bytes: number, eventId = "1"): RunEvent => ({
  sourceKey,
  type: "history",
  at: new Date().toISOString(),
  data: {
    runId,
    event: {
      eventId,
      eventTime: null,
      eventType: "EVENT_TYPE_ACTIVITY_TASK_COMPLETED",
      attributes: {},
      payloads: { result: "x".repeat(bytes) },
    },
  },
});

describe("EdgeClient: batched run events", () => {
  it("events of many runs handed over together go out as one signed push, grouped by run, in order", async () => {
    const edge = await fakeEdge(() => 200);
    const client = new EdgeClient(edge.url, SECRET, () => undefined, 3, 20);
    await Promise.all(Array.from({ length: 20 }, (_, i) => client.pushRunEvents(`hello-${i}`, [started(`r${i}`), started(`r${i}b`)])));
    expect(edge.received).toHaveLength(1);
    expect(edge.received[0]!.path).toBe("/internal/run-events");
    expect(edge.received[0]!.body.runs).toHaveLength(20);
    expect(edge.received[0]!.body.runs[3]).toEqual({
      workflowId: "hello-3",
      events: [started("r3"), started("r3b")].map((e) => ({ ...e, at: expect.any(String) })),
    });
    expect(client.counters).toMatchObject({ runEventRequests: 1, runEvents: 40, refused: 0 });
  });

  it("a push over MAX_PUSH_BYTES goes out in parts, in order: runs halved, then one run's events", async () => {
    const edge = await fakeEdge(() => 200);
    const client = new EdgeClient(edge.url, SECRET, () => undefined, 3, 20);
    // Each event carries about a fifth of a push's worth of payload.
    const big = (runId: string, n: number) => historyOfSize(runId, `history:${runId}:${n}`, MAX_PUSH_BYTES / 5, String(n));
    // Six runs of one event each: about 1.2 pushes' worth, so two pushes of three runs.
    await Promise.all(Array.from({ length: 6 }, (_, i) => client.pushRunEvents(`big-${i}`, [big(`r${i}`, 1)])));
    expect(edge.received.map((r) => r.body.runs.map((run) => run.workflowId))).toEqual([
      ["big-0", "big-1", "big-2"],
      ["big-3", "big-4", "big-5"],
    ]);
    // One run's nine events (about 1.8 pushes' worth): its events in parts, in order, none twice.
    edge.received.length = 0;
    await client.pushRunEvents(
      "big-run",
      Array.from({ length: 9 }, (_, i) => big("rb", i + 1)),
    );
    expect(edge.received.length).toBeGreaterThan(1);
    const sent = edge.received.flatMap((r) => r.body.runs.flatMap((run) => run.events.map((e) => e.sourceKey)));
    expect(sent).toEqual(Array.from({ length: 9 }, (_, i) => `history:rb:${i + 1}`));
    for (const r of edge.received) expect(Buffer.byteLength(JSON.stringify(r.body))).toBeLessThanOrEqual(MAX_PUSH_BYTES);
  });

  it("a run's events are in one push on the wire at a time, so the edge gets them in order; other runs go alongside", async () => {
    const edge = await fakeEdge(() => 200, undefined, 100);
    const client = new EdgeClient(edge.url, SECRET, () => undefined, 3, 5);
    // Three pushes' worth of one run (MAX_PUSH_EVENTS is 500), then another run's event while they go.
    const long = client.pushRunEvents(
      "long",
      Array.from({ length: 1_200 }, (_, i) => started(`l${i}`)),
    );
    // The long run's first push is on the wire (each is answered 100 ms after it arrives)...
    expect(await until(() => edge.arrivals() > 0, 5_000)).toBe(true);
    await Promise.all([long, client.pushRunEvents("other", [started("o")])]);
    const pushesOf = (workflowId: string) => edge.received.filter((r) => r.body.runs.some((run) => run.workflowId === workflowId));
    const longPushes = [...pushesOf("long")].sort((a, b) => a.arrived - b.arrived);
    expect(longPushes).toHaveLength(3);
    for (let i = 1; i < longPushes.length; i++) expect(longPushes[i]!.arrived).toBeGreaterThan(longPushes[i - 1]!.answered);
    expect(longPushes.flatMap((r) => r.body.runs.flatMap((run) => run.events.map((e) => e.sourceKey)))).toEqual(
      Array.from({ length: 1_200 }, (_, i) => `run:l${i}:started`),
    );
    // The other run did not queue behind the long one: it went out while the long run's first push was on the wire.
    const [otherPush] = pushesOf("other");
    expect(otherPush!.arrived).toBeLessThan(longPushes[0]!.answered);
  });

  it("a push with `now` goes out without waiting for the window, taking the events queued before it, in order", async () => {
    const edge = await fakeEdge(() => 200);
    // A window no test would wait for: only a `now` push can be delivered within the test's time.
    const client = new EdgeClient(edge.url, SECRET, () => undefined, 3, 3_600_000);
    const earlier = client.pushRunEvents("hello-1", [started("a")]);
    const other = client.pushRunEvents("hello-2", [started("x")]);
    await client.pushRunEvents("hello-1", [started("b")], { now: true });
    await Promise.all([earlier, other]);
    expect(edge.received).toHaveLength(1);
    expect(edge.received[0]!.body.runs.map((r) => [r.workflowId, r.events.map((e) => e.sourceKey)])).toEqual([
      ["hello-1", ["run:a:started", "run:b:started"]],
      ["hello-2", ["run:x:started"]],
    ]);
    // Without `now` the window holds again: this one is still queued.
    let delivered = false;
    void client.pushRunEvents("hello-3", [started("c")]).then(() => (delivered = true));
    await new Promise((r) => setTimeout(r, 200));
    expect(delivered).toBe(false);
    expect(edge.received).toHaveLength(1);
  });

  it("a refused push is logged as an error and retried until the edge takes it: nothing is dropped", async () => {
    const edge = await fakeEdge((_push, n) => (n < 2 ? 400 : 200));
    const logs: string[] = [];
    const client = new EdgeClient(edge.url, SECRET, (m) => logs.push(m), 10, 1);
    await client.pushRunEvents("hello-1", [started("r1")]);
    expect(edge.statuses).toEqual([400, 400, 200]);
    expect(logs.filter((l) => l.includes("ERROR") && l.includes("refused"))).toHaveLength(2);
    expect(client.counters.refused).toBe(2);
  });

  it("a push refused for one run is split: the other runs are delivered, the bad one retried on its own and reported when given up", async () => {
    const edge = await fakeEdge((push) => (push.runs.some((r) => r.workflowId === "hello-bad") ? 400 : 200));
    const logs: string[] = [];
    const client = new EdgeClient(edge.url, SECRET, (m) => logs.push(m), 3, 10);
    const good = client.pushRunEvents("hello-good", [started("g")]);
    const bad = client.pushRunEvents("hello-bad", [started("b")]);
    await expect(good).resolves.toBeUndefined();
    await expect(bad).rejects.toThrow(/refused/);
    const delivered = edge.received.filter((_r, i) => edge.statuses[i] === 200).flatMap((r) => r.body.runs.map((x) => x.workflowId));
    expect(delivered).toEqual(["hello-good"]);
    expect(logs.some((l) => l.includes("ERROR gave up"))).toBe(true);
  });

  it("a run the edge keeps refusing holds up no other run: their next events go out while it backs off, alone, off the push slots", async () => {
    const edge = await fakeEdge((push) => (push.runs.some((r) => r.workflowId === "hello-bad") ? 400 : 200));
    const client = new EdgeClient(edge.url, SECRET, () => undefined, 4, 1);
    // Handed over together: one push, refused for the bad run's sake, then split.
    const bad = client.pushRunEvents("hello-bad", [started("b")]);
    let badSettled = false;
    void bad.catch(() => undefined).finally(() => (badSettled = true));
    await client.pushRunEvents("hello-good", [started("g")]);
    // The good run's next event does not wait for the bad run's tries to run out.
    await client.pushRunEvents("hello-good", [{ ...started("g"), sourceKey: "run:g:more" }]);
    expect(badSettled).toBe(false);
    await expect(bad).rejects.toThrow(/refused/);
    // Each later try of the bad run went out alone.
    const badPushes = edge.received.filter((r) => r.body.runs.some((x) => x.workflowId === "hello-bad"));
    expect(badPushes.slice(2).every((r) => r.body.runs.length === 1)).toBe(true);
  });

  it("a run the edge refuses in a push of its own backs off off the push slots: two such runs do not hold up another run's events", async () => {
    const edge = await fakeEdge((push) => (push.runs.some((r) => r.workflowId.startsWith("hello-bad")) ? 400 : 200));
    // Six tries: held on a push slot through them, each bad run would take it for about 8 s.
    const client = new EdgeClient(edge.url, SECRET, () => undefined, 6, 1);
    // Each goes out at once in a push of its own: the two push slots.
    const bad = [1, 2].map((n) => client.pushRunEvents(`hello-bad-${n}`, [started(`b${n}`)], { now: true }));
    const badSettled = Promise.allSettled(bad);
    expect(await until(() => edge.arrivals() >= 2, 5_000)).toBe(true);
    const before = Date.now();
    await client.pushRunEvents("hello-good", [started("g")]);
    expect(Date.now() - before).toBeLessThan(2_000);
    // The bad runs are still given up after their tries, each logged, none dropped silently.
    expect((await badSettled).map((r) => r.status)).toEqual(["rejected", "rejected"]);
    for (const r of edge.received.filter((x) => x.body.runs.some((run) => run.workflowId.startsWith("hello-bad"))))
      expect(r.body.runs).toHaveLength(1);
  }, 30_000);

  it("an event the host cannot turn into JSON is given up alone, logged: the other runs of its push are delivered, and nothing waits for ever", async () => {
    const edge = await fakeEdge(() => 200);
    const logs: string[] = [];
    const client = new EdgeClient(edge.url, SECRET, (m) => logs.push(m), 3, 10);
    // A value JSON.stringify throws on: as a push body too large for one string (past V8's ~512 MiB) does.
    const unserializable = { ...started("x"), data: { runId: "x", n: 1n } } as unknown as RunEvent;
    const good = client.pushRunEvents("hello-good", [started("g")]);
    const bad = client.pushRunEvents("hello-bad", [unserializable]);
    await expect(good).resolves.toBeUndefined();
    await expect(bad).rejects.toThrow(/BigInt/);
    expect(edge.received.flatMap((r) => r.body.runs.map((run) => run.workflowId))).toEqual(["hello-good"]);
    expect(logs.some((l) => l.includes("ERROR") && l.includes("hello-bad"))).toBe(true);
    await client.drain();
  }, 10_000);

  it("a 401 (the edge does not take the host's signature: secrets differ) is retried whole, not split into a push per run", async () => {
    const edge = await fakeEdge(() => 200);
    const logs: string[] = [];
    const client = new EdgeClient(edge.url, "another-secret-long-enough-for-hmac-sha256", (m) => logs.push(m), 3, 10);
    const pushes = Array.from({ length: 12 }, (_, i) => client.pushRunEvents(`hello-${i}`, [started(`r${i}`)]));
    const settled = await Promise.allSettled(pushes);
    expect(settled.every((r) => r.status === "rejected")).toBe(true);
    expect(edge.statuses).toEqual([401, 401, 401]);
    expect(edge.received.every((r) => r.body.runs.length === 12)).toBe(true);
    expect(logs.filter((l) => l.includes("ERROR") && l.includes("401"))).not.toHaveLength(0);
  });

  it("a refused push of many runs is sent again run by run, SPLIT_PUSHES_AT_ONCE at a time, not all at once", async () => {
    // Refused while it carries more than one run; each run alone is taken, slowly, so that parts overlap if they can.
    let atEdge = 0;
    let mostAtOnce = 0;
    const edge = await fakeEdge(
      (push) => {
        if (push.runs.length > 1) return 400;
        atEdge--;
        return 200;
      },
      undefined,
      (push) => {
        if (push.runs.length > 1) return 0;
        mostAtOnce = Math.max(mostAtOnce, ++atEdge);
        return 30;
      },
    );
    const client = new EdgeClient(edge.url, SECRET, () => undefined, 3, 10);
    await Promise.all(Array.from({ length: 12 }, (_, i) => client.pushRunEvents(`hello-${i}`, [started(`r${i}`)])));
    const singles = edge.received.filter((r) => r.body.runs.length === 1);
    expect(singles.map((r) => r.body.runs[0]!.workflowId).sort()).toEqual(Array.from({ length: 12 }, (_, i) => `hello-${i}`).sort());
    // One refused push (all twelve runs were queued together): its runs go out SPLIT_PUSHES_AT_ONCE at a time.
    expect(edge.received.filter((r) => r.body.runs.length > 1).every((r) => r.body.runs.length === 12)).toBe(true);
    expect(mostAtOnce).toBeGreaterThan(1);
    expect(mostAtOnce).toBeLessThanOrEqual(SPLIT_PUSHES_AT_ONCE);
  });

  it("runs the edge answers as `dropped` (not started through the edge) are done with: counted, not retried", async () => {
    // What the edge answers when its DOs keep nothing for runs that have no row (started directly in Temporal).
    const edge = await fakeEdge(
      () => 200,
      (push) =>
        push.runs[0]!.workflowId === "older-edge"
          ? { runs: 1, accepted: 1, duplicates: 0 }
          : {
              runs: push.runs.length,
              accepted: 1,
              duplicates: 0,
              dropped: push.runs.filter((r) => r.workflowId.startsWith("direct-")).length,
            },
    );
    const client = new EdgeClient(edge.url, SECRET, () => undefined, 3, 20);
    await Promise.all([
      client.pushRunEvents("hello-1", [started("r1")]),
      client.pushRunEvents("direct-1", [started("d1")]),
      client.pushRunEvents("direct-2", [started("d2")]),
    ]);
    expect(edge.statuses).toEqual([200]);
    expect(client.counters).toMatchObject({ runEventRequests: 1, refused: 0, droppedRuns: 2 });
    // An edge whose answer has no `dropped` (older code) dropped nothing.
    await client.pushRunEvents("older-edge", [started("r2")]);
    expect(edge.statuses).toEqual([200, 200]);
    expect(client.counters.droppedRuns).toBe(2);
  });

  describe("a push the edge recorded but for some runs (503 naming them in failedRuns)", () => {
    /** An edge whose DO for `hello-bad` fails its first `failing` pushes: 503 naming it, the other runs recorded. */
    async function edgeFailingOneRun(failing: number) {
      const state = { badFailures: 0 };
      const recorded: Array<{ workflowId: string; sourceKey: string }> = [];
      const edge = await fakeEdge(
        (push) => {
          const failNow = push.runs.some((r) => r.workflowId === "hello-bad") && state.badFailures < failing;
          if (failNow) state.badFailures++;
          for (const r of push.runs)
            if (!(failNow && r.workflowId === "hello-bad"))
              for (const e of r.events) recorded.push({ workflowId: r.workflowId, sourceKey: e.sourceKey });
          return failNow ? 503 : 200;
        },
        undefined,
        0,
        (_push, status) => (status === 503 ? { error: { code: "host_unavailable", message: "partly" }, failedRuns: ["hello-bad"] } : {}),
      );
      return { ...edge, recorded, state };
    }

    it("the other runs are done at once; only that run is retried, after a backoff, off the push slots", async () => {
      const edge = await edgeFailingOneRun(2);
      const logs: string[] = [];
      const client = new EdgeClient(edge.url, SECRET, (m) => logs.push(m), 10, 5);
      const order: string[] = [];
      const bad = client.pushRunEvents("hello-bad", [started("b")]).then(() => order.push("bad"));
      const good = client.pushRunEvents("hello-good", [started("g")]).then(() => order.push("good"));
      await good;
      // While the bad run waits out its backoff, other runs' pushes go on.
      await client.pushRunEvents("hello-other", [started("o")]).then(() => order.push("other"));
      await bad;
      expect(order).toEqual(["good", "other", "bad"]);
      expect(edge.statuses).toEqual([503, 200, 503, 200]);
      // The retries carried the failed run's events only: the good run was pushed once.
      expect(edge.received.map((r) => r.body.runs.map((x) => x.workflowId))).toEqual([
        ["hello-bad", "hello-good"],
        ["hello-other"],
        ["hello-bad"],
        ["hello-bad"],
      ]);
      expect(logs.some((l) => l.includes("retrying the events of 1 run (failure 1)"))).toBe(true);
    });

    it("the run's later events wait behind its retried ones, so the edge gets them in order", async () => {
      const edge = await edgeFailingOneRun(1);
      const client = new EdgeClient(edge.url, SECRET, () => undefined, 10, 5);
      const first = client.pushRunEvents("hello-bad", [started("b")]);
      // The first push has failed for it: backing off.
      expect(await until(() => edge.state.badFailures === 1, 5_000)).toBe(true);
      const later = client.pushRunEvents("hello-bad", [{ ...started("b"), sourceKey: "later" }], { now: true });
      await Promise.all([first, later]);
      expect(edge.recorded.filter((r) => r.workflowId === "hello-bad").map((r) => r.sourceKey)).toEqual(["run:b:started", "later"]);
    });

    it("a run's push sent in parts: when a part fails for it, the later parts wait behind it, so the edge records its events in order", async () => {
      let failed = false;
      const recorded: string[] = [];
      const edge = await fakeEdge(
        (push) => {
          if (!failed) {
            failed = true;
            return 503;
          }
          for (const r of push.runs) for (const e of r.events) recorded.push(e.sourceKey);
          return 200;
        },
        undefined,
        0,
        () => ({ error: { code: "host_unavailable", message: "partly" }, failedRuns: ["big-run"] }),
      );
      const client = new EdgeClient(edge.url, SECRET, () => undefined, 10, 5);
      const big = (n: number) => historyOfSize("rb", `history:rb:${n}`, MAX_PUSH_BYTES / 5, String(n));
      // Nine events, about 1.8 pushes' worth: sent in parts; the first part fails for the run.
      await client.pushRunEvents(
        "big-run",
        Array.from({ length: 9 }, (_, i) => big(i + 1)),
      );
      expect(edge.statuses[0]).toBe(503);
      expect(recorded).toEqual(Array.from({ length: 9 }, (_, i) => `history:rb:${i + 1}`));
    });

    it("a push in parts of several runs: a run that fails in an early part keeps its events of a later part behind, however long the parts between take", async () => {
      let xFailed = false;
      const recorded: string[] = [];
      const edge = await fakeEdge(
        (push) => {
          const failX = push.runs.some((r) => r.workflowId === "X") && !xFailed;
          if (failX) xFailed = true;
          for (const r of push.runs)
            if (!(failX && r.workflowId === "X")) for (const e of r.events) recorded.push(`${r.workflowId}:${e.sourceKey}`);
          return failX ? 503 : 200;
        },
        undefined,
        // The part of another run takes longer than the failed run's first backoff (250 ms).
        (push) => (push.runs.some((r) => r.workflowId === "Y") ? 600 : 0),
        () => ({ error: { code: "host_unavailable", message: "partly" }, failedRuns: ["X"] }),
      );
      const client = new EdgeClient(edge.url, SECRET, () => undefined, 10, 50);
      const big = Math.floor(MAX_PUSH_BYTES * 0.6);
      // X's big event, Y's big event, then X's closing one: a push too large for one request.
      await Promise.all([
        client.pushRunEvents("X", [historyOfSize("rx", "x1", big)]),
        client.pushRunEvents("Y", [historyOfSize("ry", "y1", big)]),
        client.pushRunEvents("X", [historyOfSize("rx", "x2-closing", 10)]),
      ]);
      await client.drain();
      expect(recorded.filter((r) => r.startsWith("X:"))).toEqual(["X:x1", "X:x2-closing"]);
      expect(recorded).toContain("Y:y1");
    });

    it("the run's entries waiting behind one given up are given up with it: the journal hands them over again in order, never the later first", async () => {
      const edge = await edgeFailingOneRun(2);
      const dir = mkdtempSync(join(tmpdir(), "outrider-edge-giveup-order-"));
      const journal = new RunEventJournal(
        join(dir, "journal.sqlite"),
        new EdgeClient(edge.url, SECRET, () => undefined, 2, 5),
        () => undefined,
      );
      try {
        const first = journal.pushRunEvents("hello-bad", [started("b")]);
        // Its first push failed for the run: backing off, while the run's next row is handed over.
        expect(await until(() => edge.state.badFailures === 1, 5_000)).toBe(true);
        const second = journal.pushRunEvents("hello-bad", [{ ...started("b"), sourceKey: "later" }]);
        await expect(first).rejects.toThrow(/some runs/);
        await Promise.allSettled([second]);
        // The next redelivery hands over what is left, in the order it was published.
        journal.redeliver();
        expect(await until(() => journal.size() === 0, 5_000)).toBe(true);
        expect(edge.recorded.filter((r) => r.workflowId === "hello-bad").map((r) => r.sourceKey)).toEqual(["run:b:started", "later"]);
      } finally {
        journal.close();
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it("a Retry-After on the answer is waited out before the failed runs are tried again", async () => {
      let tries = 0;
      const times: number[] = [];
      const edge = await scriptedEdge((_request, n) => {
        times.push(Date.now());
        tries = n + 1;
        return n === 0
          ? {
              status: 503,
              headers: { "content-type": "application/json", "retry-after": "1" },
              body: JSON.stringify({ error: { code: "host_unavailable", message: "partly" }, failedRuns: ["hello-bad"] }),
            }
          : OK_ANSWER;
      });
      const client = new EdgeClient(edge.url, SECRET, () => undefined, 10, 1);
      await client.pushRunEvents("hello-bad", [started("b")]);
      expect(tries).toBe(2);
      expect(times[1]! - times[0]!).toBeGreaterThanOrEqual(950);
    });

    it("a run that keeps failing is given up after the tries (logged as an error, its pushes rejected); the others are unaffected", async () => {
      const edge = await edgeFailingOneRun(Number.POSITIVE_INFINITY);
      const logs: string[] = [];
      const client = new EdgeClient(edge.url, SECRET, (m) => logs.push(m), 3, 5);
      const bad = client.pushRunEvents("hello-bad", [started("b")]);
      const good = client.pushRunEvents("hello-good", [started("g")]);
      await expect(good).resolves.toBeUndefined();
      await expect(bad).rejects.toThrow(/some runs/);
      expect(edge.statuses).toEqual([503, 503, 503]);
      expect(logs.filter((l) => l.includes("ERROR gave up pushing 1 run events of hello-bad"))).toHaveLength(1);
      await client.drain();
    });
  });

  describe("a push given up after its tries (the edge down all along)", () => {
    /** The sourceKeys the edge recorded; it is down (503) for the first `downFor` requests. */
    async function edgeDownFor(downFor: number) {
      const recorded: string[] = [];
      const edge = await fakeEdge((push, n) => {
        if (n < downFor) return 503;
        for (const r of push.runs) for (const e of r.events) recorded.push(e.sourceKey);
        return 200;
      });
      return { edge, recorded };
    }

    it("sent in parts: the run's later parts are not sent once an earlier part is given up (the edge never gets its end without what precedes it)", async () => {
      const { edge, recorded } = await edgeDownFor(2);
      const logs: string[] = [];
      const client = new EdgeClient(edge.url, SECRET, (m) => logs.push(m), 2, 5);
      const big = Math.floor(MAX_PUSH_BYTES * 0.6);
      const pushed = client.pushRunEvents(
        "big-run",
        [historyOfSize("rb", "h1", big, "1"), historyOfSize("rb", "h2", big, "2"), started("rb")],
        {
          now: true,
        },
      );
      await expect(pushed).rejects.toThrow(/503/);
      await client.drain();
      // The first part failed twice and was given up; the edge is back, but h2 and the end stay unsent.
      expect(edge.statuses).toEqual([503, 503]);
      expect(recorded).toEqual([]);
      expect(logs.filter((l) => l.includes("ERROR gave up pushing"))).toHaveLength(1);
      // The next push of the run (the relay's again, from its start) goes out whole, in order.
      await client.pushRunEvents("big-run", [historyOfSize("rb", "h1", big, "1"), historyOfSize("rb", "h2", big, "2"), started("rb")]);
      expect(recorded).toEqual(["h1", "h2", "run:rb:started"]);
    });

    it("a run's events larger than one push: once its first push is given up, the ones after it are not sent", async () => {
      const { edge, recorded } = await edgeDownFor(2);
      const client = new EdgeClient(edge.url, SECRET, () => undefined, 2, 5);
      const events = Array.from({ length: MAX_PUSH_EVENTS + 1 }, (_, i) => ({ ...started("r"), sourceKey: `e${i + 1}` }));
      await expect(client.pushRunEvents("long-run", events)).rejects.toThrow(/503/);
      await client.drain();
      expect(edge.statuses).toEqual([503, 503]);
      expect(recorded).toEqual([]);
    });
  });

  it("an edge that is down is retried with backoff until it answers", async () => {
    const edge = await fakeEdge((_push, n) => (n < 2 ? 503 : 200));
    const client = new EdgeClient(edge.url, SECRET, () => undefined, 10, 1);
    await client.pushRunEvents("hello-1", [started("r1")]);
    expect(edge.statuses).toEqual([503, 503, 200]);
  });

  it("a 503 or a 429 with Retry-After is tried again no sooner than it says", async () => {
    const times: number[] = [];
    const edge = await scriptedEdge((_request, n) => {
      times.push(Date.now());
      if (n === 0) return { status: 503, headers: { "retry-after": "1" } };
      if (n === 1) return { status: 429, headers: { "retry-after": new Date(Date.now() + 2_000).toUTCString() } };
      return OK_ANSWER;
    });
    const client = new EdgeClient(edge.url, SECRET, () => undefined, 10, 1);
    await client.pushRunEvents("hello-1", [started("r1")]);
    expect(times).toHaveLength(3);
    expect(times[1]! - times[0]!).toBeGreaterThanOrEqual(950);
    // An HTTP date, to the second: at least the next whole second.
    expect(times[2]! - times[1]!).toBeGreaterThanOrEqual(950);
  });

  it("a run refused, then pushed alone, whose push is answered 503 or 429 with Retry-After waits it out too (not only its own backoff)", async () => {
    const times: number[] = [];
    const edge = await scriptedEdge((_request, n) => {
      times.push(Date.now());
      // Refused twice: from then on the run goes alone, one try per backoff (250 ms, then 500 ms).
      if (n < 2) return { status: 400, headers: { "content-type": "application/json" }, body: "{}" };
      if (n === 2) return { status: 503, headers: { "retry-after": "2" } };
      return OK_ANSWER;
    });
    const client = new EdgeClient(edge.url, SECRET, () => undefined, 10, 1);
    await client.pushRunEvents("hello-1", [started("r1")]);
    expect(times).toHaveLength(4);
    expect(times[3]! - times[2]!).toBeGreaterThanOrEqual(1_950);
  });

  it("a try the edge takes and never answers is given up after its time limit and tried again", async () => {
    let requests = 0;
    // The first request hangs (an edge, or a proxy before it, that holds the connection); later ones answer at once.
    const edge = await fakeEdge(
      () => 200,
      undefined,
      () => (++requests === 1 ? 3_600_000 : 0),
    );
    const client = new EdgeClient(edge.url, SECRET, () => undefined, 10, 1, 300);
    await client.pushRunEvents("hello-1", [started("r1")]);
    expect(requests).toBe(2);
    expect(edge.statuses).toEqual([200]);
    server?.closeAllConnections();
  }, 15_000);
});

/**
 * Something other than the edge answering at its address (a proxy, an access gateway): each
 * request, as `METHOD path`, gets what `respond` says for it and the number of requests before it.
 */
async function scriptedEdge(respond: (request: string, n: number) => { status: number; headers?: Record<string, string>; body?: string }) {
  const requests: string[] = [];
  server = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      const request = `${req.method} ${req.url}`;
      const { status, headers = {}, body = "" } = respond(request, requests.length);
      requests.push(request);
      res.writeHead(status, headers).end(body);
    });
  });
  await new Promise<void>((r) => server!.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${(server!.address() as AddressInfo).port}`, requests };
}

/** The edge's answer to a push of one run with one event that it recorded. */
const OK_ANSWER = {
  status: 200,
  headers: { "content-type": "application/json" },
  body: JSON.stringify({ runs: 1, accepted: 1, duplicates: 0, dropped: 0 }),
};

/** An access gateway's answer to a request it has not authenticated: off to its login page. */
const LOGIN_REDIRECT = { status: 302, headers: { location: "/login" } };
/** Its login page: 200, but HTML. */
const LOGIN_PAGE = { status: 200, headers: { "content-type": "text/html" }, body: "<!doctype html><title>Sign in</title>" };

describe("EdgeClient: room for callers that hold off (the history relay's pages)", () => {
  it("the bytes of a call are held until the edge takes it or it is given up; callers waiting for room are woken in turn, one room at a time", async () => {
    let down = true;
    const edge = await fakeEdge(() => (down ? 503 : 200));
    const client = new EdgeClient(edge.url, SECRET, () => undefined, 2, 1);
    const limit = 1_000;
    expect(client.hasRoomFor(5_000, limit)).toBe(true); // nothing held: a call larger than the bound goes alone
    const givenUp = client.pushRunEvents("run-a", [started("a")], { bytes: 600 });
    expect(client.hasRoomFor(400, limit)).toBe(true);
    expect(client.hasRoomFor(401, limit)).toBe(false);
    const woken: string[] = [];
    const wait = (name: string) =>
      client.roomFor(400, limit).then((release) => {
        woken.push(name);
        return release;
      });
    const first = wait("first");
    const second = wait("second");
    // Room for the first; the second waits behind it (the first's room is kept for it), and so does a newcomer.
    const releaseFirst = await first;
    expect(client.hasRoomFor(1, limit)).toBe(false);
    await expect(givenUp).rejects.toThrow(/503/);
    // The given-up call holds nothing any more: the second is woken beside the first.
    const releaseSecond = await second;
    expect(woken).toEqual(["first", "second"]);
    releaseFirst();
    releaseSecond();
    releaseSecond(); // twice is once
    expect(client.hasRoomFor(limit, limit)).toBe(true);
    down = false;
    const taken = client.pushRunEvents("run-b", [started("b")], { bytes: limit });
    expect(client.hasRoomFor(1, limit)).toBe(false);
    await taken;
    expect(client.hasRoomFor(limit, limit)).toBe(true);
  });
});

describe("EdgeClient: an answer that is not the edge's is no delivery", () => {
  it("a redirect (to a login page answering 200) is not followed: logged and retried, given up after the tries, and the journal keeps the row", async () => {
    const edge = await scriptedEdge((request) => (request === "GET /login" ? LOGIN_PAGE : LOGIN_REDIRECT));
    const logs: string[] = [];
    const dir = mkdtempSync(join(tmpdir(), "outrider-edge-redirect-"));
    const journal = new RunEventJournal(
      join(dir, "journal.sqlite"),
      new EdgeClient(edge.url, SECRET, (m) => logs.push(m), 2, 1),
      () => undefined,
    );
    try {
      await expect(journal.pushRunEvents("hello-1", [started("r1")])).rejects.toThrow(/302/);
      // The event is still in the journal, for a redelivery: not lost to a page that answered 200.
      expect(journal.size()).toBe(1);
      expect(edge.requests).toEqual(["POST /internal/run-events", "POST /internal/run-events"]);
      expect(logs.some((l) => l.includes("302"))).toBe(true);
    } finally {
      journal.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a 2xx whose body is not the edge's answer (a proxy's HTML page, an empty object) is logged and retried until the edge answers", async () => {
    const answers = [
      LOGIN_PAGE,
      { status: 200, headers: { "content-type": "application/json" }, body: "{}" },
      {
        status: 200,
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ runs: 1, accepted: 1, duplicates: 0, dropped: 0 }),
      },
    ];
    const edge = await scriptedEdge((_request, n) => answers[Math.min(n, answers.length - 1)]!);
    const logs: string[] = [];
    const client = new EdgeClient(edge.url, SECRET, (m) => logs.push(m), 10, 1);
    await client.pushRunEvents("hello-1", [started("r1")]);
    expect(edge.requests).toHaveLength(3);
    expect(logs.filter((l) => l.includes("not the edge's answer"))).toHaveLength(2);
  });
});

describe("EdgeClient: the catalog", () => {
  it("is published only once the edge answers as the edge: a redirect, or a 200 that is not its answer, is tried again", async () => {
    const answers = [
      LOGIN_REDIRECT,
      LOGIN_PAGE,
      { status: 200, headers: { "content-type": "application/json" }, body: JSON.stringify({ published: 0 }) },
    ];
    const edge = await scriptedEdge((_request, n) => answers[Math.min(n, answers.length - 1)]!);
    const logs: string[] = [];
    const client = new EdgeClient(edge.url, SECRET, (m) => logs.push(m), 3, 1);
    await client.publishCatalog([]);
    // The redirect was not followed to the login page: every request went to the catalog.
    expect(edge.requests).toEqual(["POST /internal/catalog", "POST /internal/catalog", "POST /internal/catalog"]);
    expect(logs.some((l) => l.includes("302"))).toBe(true);
    expect(logs.some((l) => l.includes("not the edge's answer"))).toBe(true);
  });

  it("is published however many tries it takes (the edge may come up long after the host), not given up after the run events' limit", async () => {
    const edge = await fakeEdge((_push, n) => (n < 4 ? 503 : 200));
    const logs: string[] = [];
    const client = new EdgeClient(edge.url, SECRET, (m) => logs.push(m), 3, 1);
    await client.publishCatalog([]);
    expect(edge.statuses).toEqual([503, 503, 503, 503, 200]);
    expect(edge.received.at(-1)!.path).toBe("/internal/catalog");
  }, 20_000);
});
