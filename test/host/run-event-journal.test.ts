/**
 * The host's journal of activities' run events (host/run-event-journal.ts), in front of a real
 * EdgeClient and a stand-in edge that is down or up as the test says: what the edge has not
 * taken survives the process and a given-up push, and is delivered once it can be.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { EdgeClient } from "../../host/edge-client.ts";
import { JOURNAL_MAX_AGE_MS, MAX_BYTES_IN_FLIGHT, RunEventJournal } from "../../host/run-event-journal.ts";
import type { RunEvent, RunEventPush } from "../../src/shared/host-api.ts";

const SECRET = "run-event-journal-test-secret-long-enough-for-hmac"; // test-only

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "outrider-journal-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let server: Server | undefined;
const open: RunEventJournal[] = [];
afterEach(async () => {
  for (const journal of open.splice(0)) journal.close();
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = undefined;
});

/**
 * A stand-in edge: 503 while `down`, 400 to a push carrying a run in `refused`, else 200; records
 * the events of the pushes it took, after `delayMs`.
 */
async function standInEdge(delayMs = 0) {
  const state = { down: true, refused: new Set<string>(), took: [] as RunEvent[], pushes: 0 };
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", async () => {
      state.pushes++;
      if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
      if (state.down) {
        res.writeHead(503, { "content-type": "application/json" }).end(JSON.stringify({ error: { code: "unavailable" } }));
        return;
      }
      const push = JSON.parse(Buffer.concat(chunks).toString()) as RunEventPush;
      if (push.runs.some((run) => state.refused.has(run.workflowId))) {
        res.writeHead(400, { "content-type": "application/json" }).end(JSON.stringify({ error: { code: "invalid_request" } }));
        return;
      }
      for (const run of push.runs) state.took.push(...run.events);
      const accepted = push.runs.reduce((n, run) => n + run.events.length, 0);
      res
        .writeHead(200, { "content-type": "application/json" })
        .end(JSON.stringify({ runs: push.runs.length, accepted, duplicates: 0, dropped: 0 }));
    });
  });
  await new Promise<void>((r) => server!.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${(server!.address() as AddressInfo).port}`, state };
}

/** A journal at `path` in front of an EdgeClient that gives a push up after `maxAttempts` tries. */
function journalAt(path: string, edgeUrl: string, maxAttempts = 2, log: (msg: string) => void = () => undefined) {
  const journal = new RunEventJournal(path, new EdgeClient(edgeUrl, SECRET, () => undefined, maxAttempts, 1), log);
  open.push(journal);
  return journal;
}

const stepEnd = (n: number): RunEvent => ({
  sourceKey: `step:run-1:act-${n}:1:completed`,
  type: "step",
  at: "2026-12-03T10:00:00.000Z",
  data: { runId: "run-1", activityId: `act-${n}`, stepName: "greet", attempt: 1, state: "completed", outputs: { n } },
});

const until = async (done: () => boolean, timeoutMs = 10_000) => {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 10));
  }
};

/** A sink that keeps each push open until the test settles it (an edge that does not answer yet); `n` is the step's number. */
function heldSink() {
  const calls: Array<{ n: number; settle: (ok: boolean) => void }> = [];
  const sink = {
    pushRunEvents: (_workflowId: string, events: RunEvent[]) =>
      new Promise<void>((resolve, reject) =>
        calls.push({
          n: (events[0]!.data as { outputs: { n: number } }).outputs.n,
          settle: (ok) => (ok ? resolve() : reject(new Error("given up"))),
        }),
      ),
  };
  return { calls, sink };
}

describe("the host's run event journal", () => {
  it("what the edge has not taken when the host stops is delivered by the next host process, once", async () => {
    const edge = await standInEdge();
    const path = join(dir, "restart.sqlite");
    const first = journalAt(path, edge.url);
    // The edge is down: the push is given up (two tries), and the row stays.
    await expect(first.pushRunEvents("hello-1", [stepEnd(1), stepEnd(2)])).rejects.toThrow();
    expect(first.size()).toBe(1);
    first.close(); // the process stops

    edge.state.down = false;
    const next = journalAt(path, edge.url);
    expect(next.start()).toBe(1);
    await until(() => next.size() === 0);
    expect(edge.state.took).toEqual([stepEnd(1), stepEnd(2)]);
  });

  it("a push given up on is pushed again every interval until the edge takes it; a delivered one leaves no row", async () => {
    const edge = await standInEdge();
    const journal = journalAt(join(dir, "interval.sqlite"), edge.url);
    journal.start(50);
    await expect(journal.pushRunEvents("hello-2", [stepEnd(3)])).rejects.toThrow();
    await new Promise((r) => setTimeout(r, 200));
    expect(journal.size()).toBe(1);
    edge.state.down = false;
    await until(() => journal.size() === 0);
    expect(edge.state.took).toEqual([stepEnd(3)]);
    await journal.pushRunEvents("hello-2", [stepEnd(4)]);
    expect(journal.size()).toBe(0);
    expect(edge.state.took).toEqual([stepEnd(3), stepEnd(4)]);
  });

  it("a row with its push under way is not pushed again meanwhile", async () => {
    const edge = await standInEdge(300);
    edge.state.down = false;
    const journal = journalAt(join(dir, "in-flight.sqlite"), edge.url);
    const pushed = journal.pushRunEvents("hello-3", [stepEnd(5)]);
    expect(journal.redeliver()).toBe(0);
    await pushed;
    expect(edge.state.pushes).toBe(1);
    expect(journal.size()).toBe(0);
  });

  it("a row the edge has not taken in JOURNAL_MAX_AGE_MS is dropped with an ERROR naming its run, not silently", async () => {
    const edge = await standInEdge();
    const path = join(dir, "old.sqlite");
    const first = journalAt(path, edge.url);
    await expect(first.pushRunEvents("hello-4", [stepEnd(6)])).rejects.toThrow();
    first.close();
    const db = new DatabaseSync(path);
    db.prepare("UPDATE run_events SET added_at = ?").run(Date.now() - JOURNAL_MAX_AGE_MS - 1);
    db.close();
    const logged: string[] = [];
    const next = journalAt(path, edge.url, 2, (msg) => logged.push(msg));
    expect(next.redeliver()).toBe(0);
    expect(next.size()).toBe(0);
    expect(logged).toEqual([expect.stringMatching(/ERROR gave up run events of hello-4 journaled .*7 days/)]);
  });

  it("however long the edge is away, at most its bound of rows is with the EdgeClient (in memory); the rest wait in the file and go in order, each once, as earlier ones are taken", async () => {
    const { calls, sink } = heldSink();
    const journal = new RunEventJournal(join(dir, "bounded.sqlite"), sink, () => undefined, { rows: 5, bytes: MAX_BYTES_IN_FLIGHT });
    open.push(journal);
    const settled: boolean[] = Array.from({ length: 20 }, () => false);
    const published = Array.from({ length: 20 }, (_, i) => journal.pushRunEvents("hello-5", [stepEnd(i)]).then(() => (settled[i] = true)));
    expect(calls.map((c) => c.n)).toEqual([0, 1, 2, 3, 4]);
    expect(journal.size()).toBe(20);
    // A redelivery meanwhile hands over nothing more: the bound is taken.
    expect(journal.redeliver()).toBe(0);
    // The edge takes what it has: each push taken makes room for the next row at once, oldest first.
    for (let round = 1; round < 4; round++) {
      for (const call of calls.slice(-5)) call.settle(true);
      await until(() => calls.length === 5 * (round + 1));
    }
    for (const call of calls.slice(-5)) call.settle(true);
    await until(() => journal.size() === 0);
    expect(calls.map((c) => c.n)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    // Every publisher learned that its row was taken, the ones that waited in the file too.
    await Promise.all(published);
    expect(settled.every(Boolean)).toBe(true);
    // With nothing left waiting, a new row goes straight to the EdgeClient again.
    void journal.pushRunEvents("hello-5", [stepEnd(20)]);
    expect(calls.at(-1)!.n).toBe(20);
  });

  it("the bound counts bytes too: rows of MiBs wait in the file past it (one row always goes)", async () => {
    const { calls, sink } = heldSink();
    const journal = new RunEventJournal(join(dir, "bounded-bytes.sqlite"), sink, () => undefined, { rows: 100, bytes: 3 * 1024 * 1024 });
    open.push(journal);
    const big = (n: number): RunEvent =>
      ({ ...stepEnd(n), data: { ...stepEnd(n).data, outputs: { n, text: "x".repeat(1024 * 1024) } } }) as RunEvent;
    for (let n = 0; n < 5; n++) void journal.pushRunEvents("hello-7", [big(n)]);
    expect(calls.map((c) => c.n)).toEqual([0, 1]);
    calls[0]!.settle(true);
    await until(() => calls.length === 3);
    expect(calls.map((c) => c.n)).toEqual([0, 1, 2]);
  });

  it("after a push is given up, later rows queue behind it in the file: a run's events still reach the edge in the order they were published", async () => {
    const { calls, sink } = heldSink();
    const journal = new RunEventJournal(join(dir, "ordered.sqlite"), sink, () => undefined);
    open.push(journal);
    const first = journal.pushRunEvents("hello-6", [stepEnd(1)]);
    calls[0]!.settle(false);
    await expect(first).rejects.toThrow("given up");
    const second = journal.pushRunEvents("hello-6", [stepEnd(2)]);
    expect(calls.map((c) => c.n)).toEqual([1]);
    expect(journal.redeliver()).toBe(2);
    expect(calls.map((c) => c.n)).toEqual([1, 1, 2]);
    // The second publisher's promise settles with its row's push, which waited behind the first, not before.
    let secondSettled = false;
    void second.then(() => (secondSettled = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(secondSettled).toBe(false);
    calls[2]!.settle(true);
    await second;
  });

  it("a run whose push was given up holds up only its own later rows: another run's rows are delivered at once, not at the next redelivery", async () => {
    const edge = await standInEdge();
    edge.state.down = false;
    edge.state.refused.add("hello-bad");
    const journal = journalAt(join(dir, "held-per-run.sqlite"), edge.url);
    // A redelivery interval no test waits for: whatever reaches the edge below went without one.
    journal.start(3_600_000);
    await expect(journal.pushRunEvents("hello-bad", [stepEnd(1)])).rejects.toThrow(/refused/);
    const laterBad = journal.pushRunEvents("hello-bad", [stepEnd(2)]);
    const pushesBefore = edge.state.pushes;
    // The healthy run, published after the refusal: the edge gets it now (with no redelivery, or never).
    const good = journal.pushRunEvents("hello-good", [stepEnd(10)]);
    await until(() => edge.state.took.length > 0);
    await good;
    expect(edge.state.took).toEqual([stepEnd(10)]);
    // The refused run's later row waited in the file behind its given-up one: not sent on its own.
    expect(edge.state.pushes).toBe(pushesBefore + 1);
    expect(journal.size()).toBe(2);
    // Once the edge takes the run, a redelivery hands both over, in the order they were published.
    edge.state.refused.clear();
    expect(journal.redeliver()).toBe(2);
    await laterBad;
    expect(edge.state.took).toEqual([stepEnd(10), stepEnd(1), stepEnd(2)]);
    expect(journal.size()).toBe(0);
  });
});
