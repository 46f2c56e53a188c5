/**
 * What a RunStream DO reads and keeps when it wakes, for a workflow id that holds many runs: a
 * chain of continues-as-new (or of resets) keeps every run's log, outcome and trace key in the one
 * DO, for as long as the workflow goes on. A wake reads what the latest run needs (its outcome, its
 * history totals) and the runs' ids (which run follows which); an earlier run's outcome is read
 * when something asks for it, and its trace key only when its trace is looked for. The answers are
 * the same as before the wake.
 */
import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it, vi } from "vitest";
import type { RunStream } from "../../durable-objects/run-stream.ts";
import { runStream } from "../../src/run-stream-client.ts";
import { seedCatalog, seedOrganization } from "./helpers.ts";
import { closeEvent, continuedAsNewEvents, createRunningRun, finishedEvent, historyEvent, push } from "./stream-helpers.ts";

/** What the statements of a DO's SQLite handed to JavaScript while `during` ran, in every DO of this isolate. */
interface SqlReads {
  statements: number;
  /** Rows SQLite read for them. */
  rowsRead: number;
  /** Characters of text in the rows they returned (what the DO parsed or kept). */
  chars: number;
  /** Texts returned that hold a run's outcome (a `run.finished` entry's data). */
  outcomes: number;
  /** Texts returned that are a trace's R2 key (`traces/…`, a `meta` value per finished run). */
  traceKeys: number;
}

/**
 * Counts what SQLite hands the DO while `during` runs, by wrapping `SqlStorage.exec` itself (the
 * constructor of a woken DO uses it before any test code can reach the instance). Each cursor is
 * read whole at once: the same rows, in the same order.
 */
async function sqlReadsOf(during: () => Promise<unknown>): Promise<SqlReads> {
  const reads: SqlReads = { statements: 0, rowsRead: 0, chars: 0, outcomes: 0, traceKeys: 0 };
  // Reached through another DO (nothing is written to it), so the one measured is not woken here.
  const proto = await runInDurableObject(
    runStream(env, `sql-prototype-${crypto.randomUUID()}`),
    (_i: RunStream, state) => Object.getPrototypeOf(state.storage.sql) as SqlStorage,
  );
  const exec = proto.exec;
  proto.exec = function (this: SqlStorage, query: string, ...bindings: SqlStorageValue[]) {
    const cursor = exec.call(this, query, ...bindings);
    const rows = cursor.toArray();
    reads.statements++;
    reads.rowsRead += cursor.rowsRead;
    for (const row of rows) {
      for (const value of Object.values(row)) {
        if (typeof value !== "string") continue;
        reads.chars += value.length;
        if (value.includes('"status":"')) reads.outcomes++;
        if (value.startsWith("traces/")) reads.traceKeys++;
      }
    }
    const iterator = rows[Symbol.iterator]();
    return Object.assign(iterator, {
      toArray: () => rows,
      one: () => {
        if (rows.length !== 1) throw new Error(`expected one row, got ${rows.length}`);
        return rows[0]!;
      },
      raw: () => rows.map((r) => cursor.columnNames.map((c) => r[c])).values(),
      columnNames: cursor.columnNames,
      rowsRead: cursor.rowsRead,
      rowsWritten: cursor.rowsWritten,
    });
  } as SqlStorage["exec"];
  try {
    await during();
  } finally {
    proto.exec = exec;
  }
  return reads;
}

/** A workflow whose `runs` runs each continued as new into the next, pushed as the host's relay pushes them; the last is open. */
async function continueAsNewChain(organizationId: string, runs: number) {
  const { workflowId, runId: first } = await createRunningRun(organizationId);
  const runIds = [first, ...Array.from({ length: runs - 1 }, () => crypto.randomUUID())];
  let events: unknown[] = [];
  for (const [i, runId] of runIds.entries()) {
    const next = runIds[i + 1];
    events.push(historyEvent(runId, 1), ...(next ? continuedAsNewEvents(runId, 2, next) : []));
    if (events.length >= 450) {
      await push(workflowId, events);
      events = [];
    }
  }
  if (events.length > 0) await push(workflowId, events);
  return { workflowId, runIds };
}

describe("RunStream wake of a workflow with many runs", () => {
  let organizationId: string;
  beforeAll(async () => {
    await seedCatalog();
    ({ organizationId } = await seedOrganization());
  });

  it("a wake after 2,000 continues-as-new reads no earlier run's outcome nor trace key, and answers as before", {
    timeout: 180_000,
  }, async () => {
    const RUNS = 2_000;
    const { workflowId, runIds } = await continueAsNewChain(organizationId, RUNS);
    const stub = () => runStream(env, workflowId);
    const latest = runIds.at(-1)!;
    const traces = await env.TRACES.list({ prefix: `traces/${workflowId}/`, limit: 1000 });
    expect(traces.objects.length + (traces.truncated ? 1000 : 0)).toBeGreaterThan(999);

    await evictDurableObject(stub());
    const startedAt = Date.now();
    const wake = await sqlReadsOf(() => stub().streamState());
    const wakeMs = Date.now() - startedAt;
    // The first push after the wake looks for runs without a trace: only after the last run that had one.
    const firstPush = await sqlReadsOf(() => push(workflowId, [historyEvent(latest, 2)]));
    console.log(JSON.stringify({ runs: RUNS, wakeMs, wake, firstPush }));

    // The runs' ids are read (which run follows which), not their outcomes, nor a key per finished run.
    expect(wake.outcomes).toBe(0);
    expect(wake.traceKeys).toBe(0);
    expect(firstPush.outcomes).toBe(0);
    expect(firstPush.traceKeys).toBe(0);
    expect(firstPush.rowsRead).toBeLessThan(RUNS);
    // About two run ids per run, not what each run logged.
    expect(wake.chars).toBeLessThan(RUNS * 100);

    // The answers are the log's, as before the wake.
    expect(await stub().streamState()).toEqual({ runId: latest, finished: false, lastEventId: 2 });
    for (const runId of [runIds[0]!, runIds[1_000]!, runIds.at(-2)!]) {
      expect(await stub().streamState(runId)).toEqual({ runId, finished: true, lastEventId: 2 });
      const read = (await stub().read(organizationId, workflowId, { runId, settle: false })) as unknown as {
        ok: boolean;
        view: { run: { status: string; temporalRunId: string }; earlier?: boolean };
      };
      expect(read).toMatchObject({ ok: true, view: { run: { status: "continued_as_new", temporalRunId: runId }, earlier: true } });
    }
    const page = await stub().historyPage(runIds[500], 0, 10, false);
    expect(page).toMatchObject({ runId: runIds[500], known: true, complete: true, nextAfterEventId: null });
    expect(page.workflow).toMatchObject({ status: "continued_as_new", closed: true });
    // A run handed over to and not yet logged is known (the chain's next), an unknown one is not.
    const handedOver = crypto.randomUUID();
    await push(workflowId, continuedAsNewEvents(latest, 3, handedOver));
    await evictDurableObject(stub());
    expect((await stub().historyPage(handedOver, 0, 10, false)).known).toBe(true);
    expect((await stub().historyPage(crypto.randomUUID(), 0, 10, false)).known).toBe(false);
    expect(await stub().streamState()).toEqual({ runId: handedOver, finished: false, lastEventId: 0 });
  });

  it("a run whose trace R2 refused before the DO went away has it written after the wake, behind runs whose traces were", async () => {
    const { workflowId, runId: first } = await createRunningRun(organizationId);
    const stub = () => runStream(env, workflowId);
    const second = crypto.randomUUID();
    const traceOf = (runId: string) => env.TRACES.head(`traces/${workflowId}/${runId}.json`);
    // The first run continues as new: its trace is written, and the next wake looks only after it.
    await push(workflowId, [historyEvent(first, 1), ...continuedAsNewEvents(first, 2, second)]);
    expect(await traceOf(first)).not.toBeNull();
    const put = vi.spyOn(env.TRACES, "put").mockRejectedValue(new Error("R2 is unavailable (test)"));
    const warn = vi.spyOn(console, "warn").mockImplementation(() => undefined);
    try {
      await push(workflowId, [historyEvent(second, 1), closeEvent(second, 2), finishedEvent(second)]);
    } finally {
      put.mockRestore();
      warn.mockRestore();
    }
    expect(await traceOf(second)).toBeNull();
    await evictDurableObject(stub());
    // The alarm, kept for the missing trace, writes it in the next instance; then nothing is left to watch.
    expect(await runDurableObjectAlarm(stub())).toBe(true);
    expect(await traceOf(second)).not.toBeNull();
    expect(await runInDurableObject(stub(), (_i: RunStream, state) => state.storage.getAlarm())).toBeNull();
  });
});
