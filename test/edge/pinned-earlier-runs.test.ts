/**
 * The run-pinned status, result and input routes answer any run of the workflow the edge knows:
 * the row's current run as before, and an earlier one (replaced by a reset, or continued as new)
 * from the run's log (durable-objects/run-stream/earlier-run.ts). No host here (HOST_URL is a
 * closed port): a reset is what the reset route records once the host answered (runResetEvent),
 * and the runs' events are pushed as the host's relay pushes them. Happy paths, then errors and
 * stop/terminate, then other tenants.
 */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { EventLog } from "../../durable-objects/run-stream/event-log.ts";
import { createSchema } from "../../durable-objects/run-stream/storage.ts";
import { runStream } from "../../src/run-stream-client.ts";
import type { RunEvent } from "../../src/shared/run-event-schema.ts";
import { runResetEvent } from "../../src/shared/run-events.ts";
import { call, type OutputErrorBody, scriptHost, seedCatalog, seedOrganization } from "./helpers.ts";
import { closeEvent, continuedAsNewEvents, createRunningRun, historyEvent, httpAttributeEvent, push } from "./stream-helpers.ts";
import { instrumentedSql } from "./sql-helpers.ts";

type Org = Awaited<ReturnType<typeof seedOrganization>>;

const INPUT = { text: "a b c" };

const at = (second: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, second)).toISOString();

const finished = (runId: string, status: string, second: number, extra: Record<string, unknown> = {}) => ({
  sourceKey: `run:${runId}:finished`,
  type: "run.finished",
  at: at(second),
  data: { runId, status, output: null, error: null, ...extra },
});

const started = (runId: string, second: number) => ({
  sourceKey: `run:${runId}:started`,
  type: "run.started",
  at: at(second),
  data: { runId },
});

const countWordsCost = (runId: string, total: number) =>
  httpAttributeEvent(runId, total, { activityId: "1", stepName: "countWords" }, total);

/** The first history event of a run a continue-as-new started, with its own arguments. */
const continuedStart = (runId: string, from: string, args: unknown) => ({
  sourceKey: `history:${runId}:1`,
  type: "history",
  at: new Date().toISOString(),
  data: {
    runId,
    event: {
      eventId: "1",
      eventTime: new Date().toISOString(),
      eventType: "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED",
      attributes: { taskQueue: { name: "outrider" }, continuedExecutionRunId: from },
      payloads: { input: [args] },
    },
  },
});

/** A two_steps run that failed, then a reset that replaced it; the new run is still running. */
async function failedThenReset(org: Org) {
  const { workflowId, runId: oldRunId } = await createRunningRun(org.organizationId);
  await env.DB.prepare("UPDATE runs SET input = ? WHERE temporal_workflow_id = ?").bind(JSON.stringify(INPUT), workflowId).run();
  await push(workflowId, [
    historyEvent(oldRunId, 1),
    countWordsCost(oldRunId, 0.25),
    closeEvent(oldRunId, 2),
    finished(oldRunId, "failed", 30, { error: "too loud" }),
  ]);
  const newRunId = crypto.randomUUID();
  await push(workflowId, [runResetEvent(newRunId, oldRunId, at(40)), historyEvent(newRunId, 1)]);
  return { workflowId, oldRunId, newRunId };
}

describe("pinned status, result and input of a run a reset replaced", () => {
  let org: Org;
  const get = (path: string, key = org.key) => call(path, { headers: { authorization: `Bearer ${key}` } });
  const json = async (path: string) => {
    const res = await get(path);
    expect(res.status, path).toBe(200);
    return (await res.json()) as Record<string, unknown>;
  };

  beforeAll(async () => {
    await seedCatalog();
    org = await seedOrganization();
  });

  it("the old run answers its own status, result and input; the new run (and the unpinned routes) the new run", async () => {
    const { workflowId, oldRunId, newRunId } = await failedThenReset(org);
    const base = `/workflow/${workflowId}`;

    expect(await json(`${base}/runs/${oldRunId}/status`)).toMatchObject({
      workflowId,
      runId: oldRunId,
      status: "failed",
      completedAt: Date.parse(at(30)),
      workflowName: "two_steps",
    });
    const oldResult = await json(`${base}/runs/${oldRunId}/result`);
    expect(oldResult).toMatchObject({ workflowId, runId: oldRunId, status: "failed", error: "too loud", output: null, input: INPUT });
    expect(oldResult.aggregations).toMatchObject({ cost: { total: 0.25 }, httpRequests: { total: 1 } });
    expect((oldResult.trace as { destinations: { remote: string } }).destinations.remote).toContain(oldRunId);
    expect(await json(`${base}/runs/${oldRunId}/input`)).toEqual({ workflowId, runId: oldRunId, input: INPUT });

    for (const path of [`${base}/runs/${newRunId}/status`, `${base}/status`]) {
      expect(await json(path), path).toMatchObject({ workflowId, runId: newRunId, status: "running", completedAt: "" });
    }
    for (const path of [`${base}/runs/${newRunId}/result`, `${base}/result`]) {
      const res = await get(path);
      expect(res.status, path).toBe(424);
      expect(((await res.json()) as OutputErrorBody).code).toBe("run_not_finished");
    }
    expect(await json(`${base}/runs/${newRunId}/input`)).toEqual({ workflowId, runId: newRunId, input: INPUT });
    // Unpinned, the workflow's first input and the run started with it, as Output's firstExecutionRunId (a reset keeps it).
    expect(await json(`${base}/input`)).toEqual({ workflowId, runId: oldRunId, input: INPUT });

    // The new run ends: its result is its own; the old run's answers do not change.
    await push(workflowId, [
      closeEvent(newRunId, 2),
      countWordsCost(newRunId, 0.5),
      finished(newRunId, "completed", 50, { output: { words: 3 } }),
    ]);
    expect(await json(`${base}/runs/${newRunId}/result`)).toMatchObject({ runId: newRunId, status: "completed", output: { words: 3 } });
    expect(await json(`${base}/runs/${oldRunId}/result`)).toMatchObject({
      runId: oldRunId,
      status: "failed",
      output: null,
      aggregations: { cost: { total: 0.25 } },
    });
  });

  it("a run reset while it ran is terminated (Temporal's reset ends it), before and after the relay brings its end", async () => {
    const { workflowId, runId: oldRunId } = await createRunningRun(org.organizationId);
    await push(workflowId, [historyEvent(oldRunId, 1)]);
    const newRunId = crypto.randomUUID();
    await push(workflowId, [runResetEvent(newRunId, oldRunId, at(20))]);
    expect(await json(`/workflow/${workflowId}/runs/${oldRunId}/status`)).toMatchObject({
      runId: oldRunId,
      status: "terminated",
      completedAt: Date.parse(at(20)),
    });
    await push(workflowId, [finished(oldRunId, "terminated", 21)]);
    expect(await json(`/workflow/${workflowId}/runs/${oldRunId}/status`)).toMatchObject({
      status: "terminated",
      completedAt: Date.parse(at(21)),
    });
    expect(await json(`/workflow/${workflowId}/runs/${oldRunId}/result`)).toMatchObject({ runId: oldRunId, status: "terminated" });
    expect(await json(`/workflow/${workflowId}/runs/${newRunId}/status`)).toMatchObject({ runId: newRunId, status: "running" });
  });

  it("earlier runs of a continue-as-new chain: each its own status and input (the first run's is the row's)", async () => {
    const { workflowId, runId: first } = await createRunningRun(org.organizationId);
    await env.DB.prepare("UPDATE runs SET input = ? WHERE temporal_workflow_id = ?").bind(JSON.stringify(INPUT), workflowId).run();
    const second = crypto.randomUUID();
    const third = crypto.randomUUID();
    await push(workflowId, [historyEvent(first, 1), finished(first, "continued_as_new", 10, { newRunId: second })]);
    await push(workflowId, [started(second, 10), continuedStart(second, first, { page: 2 })]);
    await push(workflowId, [
      finished(second, "continued_as_new", 20, { newRunId: third }),
      started(third, 20),
      continuedStart(third, second, { page: 3 }),
    ]);
    const base = `/workflow/${workflowId}`;
    expect(await json(`${base}/status`)).toMatchObject({ runId: third, status: "running" });
    expect(await json(`${base}/runs/${first}/status`)).toMatchObject({
      runId: first,
      status: "continued_as_new",
      completedAt: Date.parse(at(10)),
    });
    expect(await json(`${base}/runs/${second}/status`)).toMatchObject({
      runId: second,
      status: "continued_as_new",
      startedAt: Date.parse(at(10)),
      completedAt: Date.parse(at(20)),
    });
    expect(await json(`${base}/runs/${first}/input`)).toEqual({ workflowId, runId: first, input: INPUT });
    expect(await json(`${base}/runs/${second}/input`)).toEqual({ workflowId, runId: second, input: { page: 2 } });
    // The current run too answers its own arguments when pinned; unpinned, the chain's first input and
    // the run that had it (as Output, which follows firstExecutionRunId): never one run's id with another's input.
    expect(await json(`${base}/runs/${third}/input`)).toEqual({ workflowId, runId: third, input: { page: 3 } });
    expect(await json(`${base}/input`)).toEqual({ workflowId, runId: first, input: INPUT });
    expect(await json(`${base}/runs/${second}/result`)).toMatchObject({ runId: second, status: "continued_as_new", output: null });
  });
});

describe("the usage a run's result counts", () => {
  let org: Org;
  const json = async (path: string) => {
    const res = await call(path, { headers: { authorization: `Bearer ${org.key}` } });
    expect(res.status, path).toBe(200);
    return (await res.json()) as { runId: string; aggregations: { cost: { total: number } } };
  };
  const setRowRun = (workflowId: string, runId: string) =>
    env.DB.prepare("UPDATE runs SET temporal_run_id = ? WHERE temporal_workflow_id = ?").bind(runId, workflowId).run();

  beforeAll(async () => {
    await seedCatalog();
    org = await seedOrganization();
  });

  it("is one rule whether D1 names the run yet or not: the latest run counts every run's, an earlier one its lineage's", async () => {
    // first continues as new into second; a reset pinned to first replaces second with third.
    const { workflowId, runId: first } = await createRunningRun(org.organizationId);
    const second = crypto.randomUUID();
    const third = crypto.randomUUID();
    await push(workflowId, [
      historyEvent(first, 1),
      countWordsCost(first, 0.25),
      finished(first, "continued_as_new", 10, { newRunId: second }),
    ]);
    await push(workflowId, [started(second, 10), continuedStart(second, first, INPUT), countWordsCost(second, 0.5)]);
    await push(workflowId, [
      { ...runResetEvent(third, first, at(20)), data: { runId: third, resetFromRunId: first, replacedRunId: second } },
      finished(second, "terminated", 20),
      historyEvent(third, 1),
      countWordsCost(third, 1),
      closeEvent(third, 2),
      finished(third, "completed", 30, { output: { words: 3 } }),
    ]);
    const base = `/workflow/${workflowId}`;
    // The row follows the log: the latest run counts all of it, the replaced second run's work included.
    expect((await json(`${base}/result`)).aggregations.cost.total).toBe(1.75);
    expect((await json(`${base}/runs/${third}/result`)).aggregations.cost.total).toBe(1.75);
    // An earlier run counts its own and those of the runs it follows from.
    expect((await json(`${base}/runs/${second}/result`)).aggregations.cost.total).toBe(0.75);
    expect((await json(`${base}/runs/${first}/result`)).aggregations.cost.total).toBe(0.25);

    // D1 a moment behind the log (it still names the second run): the same answers.
    await setRowRun(workflowId, second);
    expect((await json(`${base}/runs/${third}/result`)).aggregations.cost.total).toBe(1.75);
    const row = await json(`${base}/result`);
    expect(row.runId).toBe(second);
    expect(row.aggregations.cost.total).toBe(0.75);
  });
});

describe("pinned run routes: runs the workflow does not have, and stop/terminate of a replaced run", () => {
  let org: Org;
  const get = (path: string) => call(path, { headers: { authorization: `Bearer ${org.key}` } });
  const send = (method: string, path: string) =>
    call(path, { method, headers: { authorization: `Bearer ${org.key}`, "content-type": "application/json" }, body: "{}" });

  beforeAll(async () => {
    await seedCatalog();
    org = await seedOrganization();
  });

  /** The pinned stop and terminate of `runId` are each 404 run_ended, as Output answers for an ended run. */
  async function expectStopAndTerminateEnded(workflowId: string, runId: string) {
    for (const [method, action] of [
      ["PATCH", "stop"],
      ["POST", "terminate"],
    ] as const) {
      const res = await send(method, `/workflow/${workflowId}/runs/${runId}/${action}`);
      expect(res.status, action).toBe(404);
      expect(await res.json()).toMatchObject({ error: "WorkflowNotFoundError", code: "run_ended", workflowId });
    }
  }

  it("a rid the workflow never had is 404 run_not_found, also one of another workflow of ours", async () => {
    const { workflowId } = await failedThenReset(org);
    const other = await failedThenReset(org);
    for (const rid of [crypto.randomUUID(), other.oldRunId, other.newRunId]) {
      for (const suffix of ["status", "result", "input"]) {
        const res = await get(`/workflow/${workflowId}/runs/${rid}/${suffix}`);
        expect(res.status, suffix).toBe(404);
        const body = (await res.json()) as OutputErrorBody;
        expect(body).toMatchObject({ error: "WorkflowNotFoundError", code: "run_not_found" });
      }
    }
  });

  it("stop and terminate of the replaced run are 404 run_ended (an ended run, as Output) and the current run is left alone", async () => {
    const { workflowId, oldRunId, newRunId } = await failedThenReset(org);
    await expectStopAndTerminateEnded(workflowId, oldRunId);
    const status = (await (await get(`/workflow/${workflowId}/status`)).json()) as Record<string, unknown>;
    expect(status).toMatchObject({ runId: newRunId, status: "running" });
  });

  it("stop and terminate of the current run, pinned, name that run to the host (which acts on it only); unpinned ones name none, and answer with the run the host acted on", async () => {
    const { workflowId, newRunId } = await failedThenReset(org);
    const sent: Array<[string, unknown]> = [];
    // The run the host found current (the row may lag behind it): the answer names it, as Output's does.
    const hostsRun = crypto.randomUUID();
    const restore = scriptHost(async (request, path) => {
      const body = (await request.json()) as { runId?: string };
      sent.push([path.split("/").at(-1)!, body]);
      return Response.json({ status: "cancelling", runId: body.runId ?? hostsRun });
    });
    try {
      for (const [method, action] of [
        ["PATCH", "stop"],
        ["POST", "terminate"],
      ] as const) {
        const pinned = await send(method, `/workflow/${workflowId}/runs/${newRunId}/${action}`);
        expect([pinned.status, ((await pinned.json()) as { runId: string }).runId], action).toEqual([200, newRunId]);
        const unpinned = await send(method, `/workflow/${workflowId}/${action}`);
        expect([unpinned.status, ((await unpinned.json()) as { runId: string }).runId], action).toEqual([200, hostsRun]);
      }
    } finally {
      restore();
    }
    expect(sent).toEqual([
      ["cancel", { runId: newRunId }],
      ["cancel", {}],
      ["terminate", { runId: newRunId }],
      ["terminate", {}],
    ]);
  });

  it("a pinned stop or terminate the host finds ended (the run closed since the row was read) is 404 run_ended, as Output's pinned handle answers", async () => {
    const { workflowId, newRunId } = await failedThenReset(org);
    const restore = scriptHost(() =>
      Response.json({ error: { code: "run_finished", message: "run already ended (completed)" } }, { status: 409 }),
    );
    try {
      await expectStopAndTerminateEnded(workflowId, newRunId);
    } finally {
      restore();
    }
  });
});

describe("pinned reads of an earlier run: other organizations", () => {
  it("another organization's workflow is 404 for its old and new run ids, and nothing of the run is in the answer", async () => {
    await seedCatalog();
    const owner = await seedOrganization("owner");
    const intruder = await seedOrganization("intruder");
    const { workflowId, oldRunId, newRunId } = await failedThenReset(owner);
    for (const rid of [oldRunId, newRunId]) {
      for (const suffix of ["status", "result", "input"]) {
        const res = await call(`/workflow/${workflowId}/runs/${rid}/${suffix}`, { headers: { authorization: `Bearer ${intruder.key}` } });
        expect(res.status, suffix).toBe(404);
        const text = await res.text();
        expect((JSON.parse(text) as OutputErrorBody).code).toBe("run_not_found");
        expect(text).not.toContain("too loud");
        expect(text).not.toContain("a b c");
        expect(text).not.toContain(rid === oldRunId ? newRunId : oldRunId);
      }
    }
  });
});

/**
 * A continue-as-new chain of `length` runs from `first` (its run already started), appended to the
 * workflow's own log as the relay's pushes leave it: each run's start, one step's cost, its hand-over
 * to the next; the last run still open. Appended in the DO (a push per run would take minutes).
 */
async function appendChain(workflowId: string, first: string, length: number, cost: number): Promise<string[]> {
  const runs = [first, ...Array.from({ length: length - 1 }, () => crypto.randomUUID())];
  await runInDurableObject(runStream(env, workflowId), (instance) => {
    const { log } = (instance as unknown as { parts: { log: EventLog } }).parts;
    for (const [i, runId] of runs.entries()) {
      const previous = runs[i - 1];
      const next = runs[i + 1];
      log.append([
        ...(previous ? [started(runId, i), continuedStart(runId, previous, { page: i })] : [historyEvent(runId, 1)]),
        countWordsCost(runId, cost),
        ...(next ? continuedAsNewEvents(runId, 2, next) : []),
      ] as RunEvent[]);
    }
  });
  return runs;
}

describe("pinned reads deep in a long continue-as-new chain", () => {
  let org: Org;
  const json = async (path: string) => {
    const res = await call(path, { headers: { authorization: `Bearer ${org.key}` } });
    const body = (await res.json()) as Record<string, unknown>;
    expect([res.status, body], path).toEqual([200, expect.anything()]);
    return body;
  };

  beforeAll(async () => {
    await seedCatalog();
    org = await seedOrganization();
  });

  it("the 101st run and later answer their result with the usage of all the runs they follow from (a DO statement binds at most 100 values)", async () => {
    const { workflowId, runId: first } = await createRunningRun(org.organizationId);
    const runs = await appendChain(workflowId, first, 150, 0.25);
    const base = `/workflow/${workflowId}`;
    for (const k of [99, 100, 120, 148]) {
      expect(await json(`${base}/runs/${runs[k]}/result`), `run ${k + 1}`).toMatchObject({
        runId: runs[k],
        status: "continued_as_new",
        aggregations: { cost: { total: (k + 1) * 0.25 }, httpRequests: { total: k + 1 } },
      });
    }
    // D1 a moment behind the log (it names the run before the latest): the unpinned result counts that run's lineage.
    await env.DB.prepare("UPDATE runs SET temporal_run_id = ?, status = 'continued_as_new' WHERE temporal_workflow_id = ?")
      .bind(runs[148], workflowId)
      .run();
    expect(await json(`${base}/result`)).toMatchObject({ runId: runs[148], aggregations: { cost: { total: 149 * 0.25 } } });
    // Unpinned, the input names the chain's first run.
    expect(await json(`${base}/input`)).toMatchObject({ runId: first });
  });
});

describe("EventLog.lineage", () => {
  const continued = (runId: string, newRunId: string, n = 2) => continuedAsNewEvents(runId, n, newRunId);
  const resetStarted = (runId: string, resetFromRunId: string, replacedRunId?: string) => ({
    ...runResetEvent(runId, resetFromRunId, at(0)),
    data: { runId, resetFromRunId, ...(replacedRunId ? { replacedRunId } : {}) },
  });

  it("walks a long chain with resets mixed in without a statement per run, and answers the same after a wake", async () => {
    await runInDurableObject(runStream(env, `lineage-${crypto.randomUUID()}`), (_instance, state) => {
      createSchema(state.storage.sql);
      const { sql, statements, reset } = instrumentedSql(state.storage.sql);
      const log = new EventLog(sql, true);
      // 600 runs continue as new one into the next; every 100th run is replaced by a reset started
      // from the run 10 before it, and the chain goes on from the reset's run.
      const predecessor = new Map<string, string>();
      let current = crypto.randomUUID();
      log.append([started(current, 0), historyEvent(current, 1)] as RunEvent[]);
      for (let i = 1; i < 600; i++) {
        const next = crypto.randomUUID();
        log.append([...continued(current, next), started(next, i)] as RunEvent[]);
        predecessor.set(next, current);
        current = next;
        if (i % 100 === 0) {
          const from = [...predecessor.keys()].at(-11)!;
          const reset = crypto.randomUUID();
          log.append([resetStarted(reset, from, current), historyEvent(reset, 1)] as RunEvent[]);
          predecessor.set(reset, from);
          current = reset;
        }
      }
      const expected = [current];
      for (let id = predecessor.get(current); id; id = predecessor.get(id)) expected.push(id);
      expect(expected.length).toBeGreaterThan(500);

      reset();
      expect(log.lineage(current)).toEqual(expected);
      expect(statements()).toBe(0);
      // A woken DO reads the same back from its log.
      const woken = new EventLog(sql);
      reset();
      expect(woken.lineage(current)).toEqual(expected);
      expect(statements()).toBe(0);
    });
  });

  it("keeps its rules: a reset's run follows the run it was started from, each run counts once, an unknown run is alone", async () => {
    await runInDurableObject(runStream(env, `lineage-${crypto.randomUUID()}`), (_instance, state) => {
      createSchema(state.storage.sql);
      const log = new EventLog(state.storage.sql, true);
      const [a, b, c, d, e, x, y] = Array.from({ length: 7 }, () => crypto.randomUUID());
      if (!a || !b || !c || !d || !e || !x || !y) throw new Error("seven run ids");
      // d continued as new into a (e's later hand-over to a does not count: the first does); a
      // continued as new into b; b is replaced by c, a reset from a, which a second end of d names too.
      const secondEnd = { ...continued(d, c, 3)[1], sourceKey: `run:${d}:finished:again` };
      log.append([...continued(d, a), ...continued(e, a), ...continued(a, b), resetStarted(c, a, b), secondEnd] as RunEvent[]);
      // x and y name each other (a log that should never be): each counts once.
      log.append([...continued(x, y), ...continued(y, x)] as RunEvent[]);
      const unknown = crypto.randomUUID();
      const answers = (l: EventLog) => [l.lineage(c), l.lineage(b), l.lineage(a), l.lineage(x), l.lineage(y), l.lineage(unknown)];
      const expected = [[c, a, d], [b, a, d], [a, d], [x, y], [y, x], [unknown]];
      expect(answers(log)).toEqual(expected);
      expect(answers(new EventLog(state.storage.sql))).toEqual(expected);
    });
  });
});

describe("a run's history totals in a long continue-as-new chain", () => {
  const HISTORY_PER_RUN = 12;
  const stats = (log: EventLog, runId: string) => ({
    last: log.lastHistoryEventId(runId),
    count: log.historyCount(runId),
    type: log.lastHistoryType(runId),
    inFlight: log.inFlight(runId),
    complete: log.isComplete(runId),
  });

  it("a wake reads a run's history totals when first asked for them, not every run's; they add up as the log kept them", async () => {
    await runInDurableObject(runStream(env, `history-totals-${crypto.randomUUID()}`), (_instance, state) => {
      createSchema(state.storage.sql);
      const kept = new EventLog(state.storage.sql, true);
      const runs = Array.from({ length: 300 }, () => crypto.randomUUID());
      for (const [i, runId] of runs.entries()) {
        const next = runs[i + 1];
        const history = Array.from({ length: HISTORY_PER_RUN }, (_, n) =>
          historyEvent(runId, n + 1, n % 3 === 0 ? "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED" : "EVENT_TYPE_ACTIVITY_TASK_COMPLETED"),
        );
        kept.append([started(runId, i), ...history, ...(next ? continuedAsNewEvents(runId, HISTORY_PER_RUN + 1, next) : [])] as RunEvent[]);
      }
      const rows = state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM events").one().n;
      const historyRows = state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM events WHERE type = 'history'").one().n;
      expect(historyRows).toBeGreaterThan(runs.length * HISTORY_PER_RUN);

      // D1 has them all, as it normally does when a DO wakes.
      kept.markProjected(kept.unprojected().map((r) => r.seq));
      const { sql, rowsRead, reset } = instrumentedSql(state.storage.sql);
      const woken = new EventLog(sql);
      // A wake reads the runs' starts and ends (and the few rows D1 lacks), not the whole log: it
      // went over it four times (the outcomes, every run's history totals, the rows D1 lacks).
      expect(rowsRead()).toBeLessThan(4 * runs.length);
      expect(4 * runs.length).toBeLessThan(rows / 3);
      // Asked for one run, it reads that run's rows (and its last event), not the others'.
      reset();
      const latest = runs.at(-1)!;
      expect(stats(woken, latest)).toEqual(stats(kept, latest));
      expect(rowsRead()).toBeLessThanOrEqual(3 * (HISTORY_PER_RUN + 2));
      // Every run's totals, read back one by one, are those the log kept as it went.
      for (const runId of runs) expect(stats(woken, runId), runId).toEqual(stats(kept, runId));
      // A history event appended after a wake to a run not read yet counts once, with those before it.
      const first = runs[0]!;
      const fresh = new EventLog(state.storage.sql);
      fresh.append([historyEvent(first, 99)] as RunEvent[]);
      expect(stats(fresh, first)).toMatchObject({ last: 99, count: stats(kept, first).count + 1 });
      expect(stats(new EventLog(state.storage.sql), first)).toEqual(stats(fresh, first));
    });
  });
});
