/**
 * POST /internal/run-events: the host's signed push of many runs' events at once.
 * Happy paths, errors and security cases are split into their own describe blocks.
 */
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import type { RunStream } from "../../durable-objects/run-stream.ts";
import { runStream } from "../../src/run-stream-client.ts";
import { signRequest } from "../../src/shared/signing.ts";
import { MAX_WORKFLOW_ID_LENGTH } from "../../src/shared/workflow-id.ts";
import { interceptD1InPlace } from "../support/d1-intercept.ts";
import { call, type ErrorBody, scriptHost, seedCatalog, seedOrganization, signedPost, TEST_HOST_SECRET } from "./helpers.ts";
import { closeEvent, finishedEvent, historyEvent } from "./stream-helpers.ts";

const PATH = "/internal/run-events";

async function insertRun(organizationId: string, workflowId = `hello-${crypto.randomUUID()}`): Promise<string> {
  const wf = await env.DB.prepare("SELECT id FROM workflows WHERE name = 'hello' AND organization_id IS NULL").first<{ id: string }>();
  await env.DB.prepare(
    "INSERT INTO runs (id, organization_id, workflow_id, workflow_name, temporal_workflow_id, status, input) VALUES (?, ?, ?, 'hello', ?, 'scheduled', '{}')",
  )
    .bind(crypto.randomUUID(), organizationId, wf!.id, workflowId)
    .run();
  return workflowId;
}

const started = (runId: string) => ({
  sourceKey: `run:${runId}:started`,
  type: "run.started",
  at: new Date().toISOString(),
  data: { runId },
});
const step = (runId: string, state: "started" | "completed") => ({
  sourceKey: `step:${runId}:1:1:${state}`,
  type: "step",
  at: new Date().toISOString(),
  data: { runId, activityId: "1", stepName: "greet", attempt: 1, state, ...(state === "completed" ? { outputs: { greeting: "hi" } } : {}) },
});

const row = (workflowId: string) =>
  env.DB.prepare("SELECT status, temporal_run_id, output FROM runs WHERE temporal_workflow_id = ?")
    .bind(workflowId)
    .first<{ status: string; temporal_run_id: string | null; output: string | null }>();
const steps = (workflowId: string) =>
  env.DB.prepare("SELECT s.status, s.attempt, s.outputs FROM step_runs s JOIN runs r ON r.id = s.run_id WHERE r.temporal_workflow_id = ?")
    .bind(workflowId)
    .all<{ status: string; attempt: number; outputs: string | null }>();
const log = (workflowId: string) => runInDurableObject(runStream(env, workflowId), (instance: RunStream) => instance.events());

let organizationId: string;
beforeAll(async () => {
  await seedCatalog();
  ({ organizationId } = await seedOrganization());
});

describe("POST /internal/run-events: applying a push", () => {
  it("records the events of several runs in one push, each in its own RunStream and D1 row", async () => {
    const a = await insertRun(organizationId);
    const b = await insertRun(organizationId);
    const res = await signedPost(PATH, {
      runs: [
        {
          workflowId: a,
          events: [
            started("ra"),
            step("ra", "started"),
            step("ra", "completed"),
            historyEvent("ra", 1),
            closeEvent("ra", 2),
            finishedEvent("ra"),
          ],
        },
        { workflowId: b, events: [started("rb"), historyEvent("rb", 1)] },
      ],
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ runs: 2, accepted: 8, duplicates: 0, dropped: 0 });
    expect(await row(a)).toMatchObject({ status: "completed", temporal_run_id: "ra", output: JSON.stringify({ ok: true }) });
    expect(await row(b)).toMatchObject({ status: "running", temporal_run_id: "rb" });
    // Both ends of the step attempt in one push make one row with the later state.
    expect((await steps(a)).results).toEqual([{ status: "completed", attempt: 1, outputs: JSON.stringify({ greeting: "hi" }) }]);
    expect((await log(a)).map((e) => e.sourceKey)).toEqual([
      "run:ra:started",
      "step:ra:1:1:started",
      "step:ra:1:1:completed",
      "history:ra:1",
      "history:ra:2",
      "run:ra:finished",
    ]);
    expect((await log(b)).map((e) => e.sourceKey)).toEqual(["run:rb:started", "history:rb:1"]);
  });

  it("drops duplicate source keys, within a push and across pushes, and merges a run listed twice", async () => {
    const a = await insertRun(organizationId);
    const first = await signedPost(PATH, {
      runs: [
        { workflowId: a, events: [started("rc"), historyEvent("rc", 1), historyEvent("rc", 1)] },
        { workflowId: a, events: [historyEvent("rc", 2), started("rc")] },
      ],
    });
    expect(await first.json()).toEqual({ runs: 1, accepted: 3, duplicates: 2, dropped: 0 });
    // The host's retry of a push it did not hear back from: a new signature, the same events.
    const retry = await signedPost(PATH, { runs: [{ workflowId: a, events: [historyEvent("rc", 2), historyEvent("rc", 3)] }] });
    expect(await retry.json()).toEqual({ runs: 1, accepted: 1, duplicates: 1, dropped: 0 });
    expect((await log(a)).map((e) => e.sourceKey)).toEqual(["run:rc:started", "history:rc:1", "history:rc:2", "history:rc:3"]);
  });

  it("a run under the longest workflow id the Workflow API accepts (256 characters) has its events recorded", async () => {
    const workflowId = await insertRun(organizationId, `hello-${"a".repeat(250)}`);
    expect(workflowId).toHaveLength(MAX_WORKFLOW_ID_LENGTH);
    const res = await signedPost(PATH, { runs: [{ workflowId, events: [started("rl"), historyEvent("rl", 1)] }] });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ runs: 1, accepted: 2, duplicates: 0, dropped: 0 });
    expect(await row(workflowId)).toMatchObject({ status: "running", temporal_run_id: "rl" });
    const tooLong = await signedPost(PATH, { runs: [{ workflowId: `${workflowId}a`, events: [started("rl")] }] });
    expect(tooLong.status).toBe(400);
    expect(((await tooLong.json()) as ErrorBody).error.issues?.[0]?.path).toBe("runs.0.workflowId");
  });
});

describe("POST /internal/run-events: bad pushes", () => {
  it("an invalid event anywhere in the push is 400 invalid_request and nothing of the push is recorded", async () => {
    const a = await insertRun(organizationId);
    const b = await insertRun(organizationId);
    const badStep = { ...step("rd", "completed"), data: { runId: "rd", state: "done" } }; // no activityId, unknown state
    const res = await signedPost(PATH, {
      runs: [
        { workflowId: a, events: [started("rd")] },
        { workflowId: b, events: [badStep] },
      ],
    });
    expect(res.status).toBe(400);
    const body = (await res.json()) as ErrorBody;
    expect(body.error.code).toBe("invalid_request");
    expect(body.error.issues?.some((i) => i.path.startsWith("runs.1.events.0"))).toBe(true);
    expect((await row(a))?.status).toBe("scheduled");
    expect(await log(a)).toEqual([]);
  });

  it("400 for an unknown event type, a history event without an id, a malformed workflowId, an empty or oversized push", async () => {
    const a = await insertRun(organizationId);
    const cases: unknown[] = [
      { runs: [{ workflowId: a, events: [{ sourceKey: "x:1", type: "made.up", at: new Date().toISOString(), data: { runId: "r" } }] }] },
      {
        runs: [
          {
            workflowId: a,
            events: [{ ...historyEvent("r", 1), data: { runId: "r", event: { eventType: "EVENT_TYPE_TIMER_FIRED", attributes: {} } } }],
          },
        ],
      },
      { runs: [{ workflowId: "not a workflow id", events: [started("r")] }] },
      { runs: [] },
      { runs: [{ workflowId: a, events: Array.from({ length: 1001 }, (_, i) => historyEvent("r", i + 1)) }] },
    ];
    for (const body of cases) {
      const res = await signedPost(PATH, body);
      expect(res.status, JSON.stringify(body).slice(0, 120)).toBe(400);
      expect(((await res.json()) as ErrorBody).error.code).toBe("invalid_request");
    }
    expect(await log(a)).toEqual([]);
  });

  it("an attribute a run's totals cannot be summed from is 400 naming it, and the run's later pushes are still recorded", async () => {
    const attribute = (n: number, attr: Record<string, unknown>) => ({
      sourceKey: `attr:rt:1:1:${n}`,
      type: "attribute",
      at: new Date().toISOString(),
      data: { runId: "rt", activityId: "1", stepName: "greet", attempt: 1, attribute: attr },
    });
    const usage = { type: "llm:usage", modelId: "local/echo", total: 0.01, tokensUsed: 5 };
    const bad: Array<Record<string, unknown>> = [
      usage, // no per-kind usage
      { ...usage, usage: [{ type: "input", ppm: 1, amount: -5, total: 0 }] },
      { ...usage, tokensUsed: 1.5, usage: [] },
      { type: "http:request", total: 0 }, // no count
      { type: "http:request", method: "GET", url: "https://example.com/", status: 200, count: -1, total: 0 },
      { type: "custom", total: 1e308 }, // two of them would sum to Infinity
      { type: "custom", total: -1 },
    ];
    for (const [i, attr] of bad.entries()) {
      const wf = await insertRun(organizationId);
      const res = await signedPost(PATH, { runs: [{ workflowId: wf, events: [started("rt"), attribute(i, attr)] }] });
      expect(res.status, JSON.stringify(attr)).toBe(400);
      const error = ((await res.json()) as ErrorBody).error;
      expect(error.code).toBe("invalid_request");
      expect(
        error.issues?.some((issue) => issue.path.startsWith("runs.0.events.1.data.attribute")),
        JSON.stringify(error.issues),
      ).toBe(true);
      expect(await log(wf)).toEqual([]);
      // The run is not blocked: its well-formed events go on being recorded, to its end.
      const good = await signedPost(PATH, {
        runs: [
          {
            workflowId: wf,
            events: [
              started("rt"),
              attribute(i, { ...usage, usage: [{ type: "input", ppm: 1, amount: 5, total: 0.01 }] }),
              attribute(100 + i, { type: "custom", note: "anything else", total: 0.5 }),
              finishedEvent("rt"),
            ],
          },
        ],
      });
      expect(good.status).toBe(200);
      expect((await row(wf))?.status).toBe("completed");
    }
  });

  it("a run.finished whose status is not final, and an event whose time is not a date, are 400 and record nothing", async () => {
    const wf = await insertRun(organizationId);
    const notFinal = { ...finishedEvent("rn"), data: { ...finishedEvent("rn").data, status: "running" } };
    const notADate = { ...started("rn"), at: "not a date" };
    for (const event of [notFinal, notADate]) {
      const res = await signedPost(PATH, { runs: [{ workflowId: wf, events: [event] }] });
      expect(res.status, JSON.stringify(event)).toBe(400);
      expect(((await res.json()) as ErrorBody).error.code).toBe("invalid_request");
    }
    expect(await log(wf)).toEqual([]);
    // The real finish is still taken (a non-final one would have taken its source key).
    expect((await signedPost(PATH, { runs: [{ workflowId: wf, events: [started("rn"), finishedEvent("rn")] }] })).status).toBe(200);
    expect((await row(wf))?.status).toBe("completed");
  });

  it("a step of the longest activity id the contract allows has a source key the contract allows", async () => {
    const wf = await insertRun(organizationId);
    const activityId = "a".repeat(200);
    const runId = crypto.randomUUID();
    const longStep = {
      // The host's key: step:<runId>:<activityId>:<attempt>:<state> (host/activities/runtime.ts).
      sourceKey: `step:${runId}:${activityId}:1000:completed`,
      type: "step",
      at: new Date().toISOString(),
      data: { runId, activityId, stepName: "greet", attempt: 1000, state: "completed" },
    };
    const res = await signedPost(PATH, { runs: [{ workflowId: wf, events: [started(runId), longStep] }] });
    expect(res.status).toBe(200);
  });

  it("any workflow id shape is pushable (a caller-chosen one too); a malformed one's 400 says what a workflow id is made of", async () => {
    const chosen = await signedPost(PATH, { runs: [{ workflowId: `order:${crypto.randomUUID()}`, events: [started("r")] }] });
    expect(chosen.status).toBe(200);
    const bad = await signedPost(PATH, { runs: [{ workflowId: "not a workflow id", events: [started("r")] }] });
    const error = ((await bad.json()) as ErrorBody).error;
    expect([bad.status, error.code]).toEqual([400, "invalid_request"]);
    expect(error.message).toContain("A-Z, a-z, 0-9");
    expect(error.message).not.toContain("<uuid>");
    expect(error.issues).toEqual([{ path: "runs.0.workflowId", message: expect.stringContaining("A-Z, a-z, 0-9") }]);
  });
});

describe("POST /internal/run-events: security", () => {
  it("refuses unsigned and wrongly signed pushes with 401", async () => {
    const a = await insertRun(organizationId);
    const body = { runs: [{ workflowId: a, events: [started("re")] }] };
    expect((await call(PATH, { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" } })).status).toBe(
      401,
    );
    expect((await signedPost(PATH, body, "wrong-secret")).status).toBe(401);
    expect(await log(a)).toEqual([]);
  });

  it("a push across runs takes caller data as deep as the per-run route does; a pathological one is 400 json_too_deep", async () => {
    const a = await insertRun(organizationId);
    const nested = (depth: number): unknown => (depth === 0 ? "x" : [nested(depth - 1)]);
    // A workflow input 62 levels deep (the most a 64-deep start body holds), inside the push's envelope.
    const base = historyEvent("rj", 1);
    const deep = { ...base, data: { ...base.data, event: { ...base.data.event, payloads: { input: [nested(62)] } } } };
    const res = await signedPost(PATH, { runs: [{ workflowId: a, events: [deep] }] });
    expect(res.status).toBe(200);
    expect((await log(a)).map((e) => e.sourceKey)).toEqual(["history:rj:1"]);
    const text = `{"runs":[{"workflowId":"${a}","events":[{"sourceKey":"s","type":"attribute","at":"now","data":{"x":${"[".repeat(2_000)}${"]".repeat(2_000)}}}]}]}`;
    const headers = { ...(await signRequest(TEST_HOST_SECRET, "POST", PATH, text)), "content-type": "application/json" };
    const tooDeep = await call(PATH, { method: "POST", headers, body: text });
    expect(tooDeep.status).toBe(400);
    expect(((await tooDeep.json()) as ErrorBody).error.code).toBe("json_too_deep");
  });

  it("a push whose text holds half a surrogate pair (a step's output the host cut to a length) is recorded, not refused: callers' bodies are, the host's are not", async () => {
    const a = await insertRun(organizationId);
    const cut = step("rs", "completed");
    const text = JSON.stringify({ runs: [{ workflowId: a, events: [started("rs"), cut] }] }).replace('"hi"', '"hi \\ud83d"');
    const headers = { ...(await signRequest(TEST_HOST_SECRET, "POST", PATH, text)), "content-type": "application/json" };
    const res = await call(PATH, { method: "POST", headers, body: text });
    expect(res.status).toBe(200);
    expect((await log(a)).map((e) => e.sourceKey)).toEqual(["run:rs:started", cut.sourceKey]);
  });

  it("a replayed push records nothing in any of its runs", async () => {
    const a = await insertRun(organizationId);
    const b = await insertRun(organizationId);
    const text = JSON.stringify({
      runs: [
        { workflowId: a, events: [started("rf")] },
        { workflowId: b, events: [started("rg")] },
      ],
    });
    const headers = { ...(await signRequest(TEST_HOST_SECRET, "POST", PATH, text)), "content-type": "application/json" };
    const send = () => call(PATH, { method: "POST", headers, body: text });
    expect((await send()).status).toBe(200);
    const replay = await send();
    expect(replay.status).toBe(401);
    expect(((await replay.json()) as ErrorBody).error.message).toMatch(/replayed/);
    expect((await log(a)).length).toBe(1);
    expect((await log(b)).length).toBe(1);
  });
});

describe("POST /internal/run-events: a run its DO cannot take", () => {
  afterEach(() => vi.restoreAllMocks());

  it("is 503 naming only that run (failedRuns): the other runs are recorded, and a retry of just that run records it", async () => {
    const good = await insertRun(organizationId);
    const broken = await insertRun(organizationId);
    expect((await signedPost(PATH, { runs: [{ workflowId: broken, events: [started("rb")] }] })).status).toBe(200);
    // The run's log table goes missing: every append to it throws until it is back.
    await runInDurableObject(runStream(env, broken), (_i: RunStream, state) => {
      state.storage.sql.exec("ALTER TABLE events RENAME TO events_away");
    });
    const error = vi.spyOn(console, "error").mockImplementation(() => undefined);
    const res = await signedPost(PATH, {
      runs: [
        { workflowId: good, events: [started("rg"), historyEvent("rg", 1)] },
        { workflowId: broken, events: [historyEvent("rb", 1)] },
      ],
    });
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toBe("1");
    const body = (await res.json()) as ErrorBody & { failedRuns: string[] };
    expect([body.error.code, body.failedRuns]).toEqual(["host_unavailable", [broken]]);
    expect(error).toHaveBeenCalledWith(expect.stringContaining("run event push partly failed"));
    expect((await log(good)).length).toBe(2);
    expect(await row(good)).toMatchObject({ status: "running", temporal_run_id: "rg" });

    await runInDurableObject(runStream(env, broken), (_i: RunStream, state) => {
      state.storage.sql.exec("ALTER TABLE events_away RENAME TO events");
    });
    const retry = await signedPost(PATH, { runs: [{ workflowId: broken, events: [historyEvent("rb", 1)] }] });
    expect(retry.status).toBe(200);
    expect((await log(broken)).length).toBe(2);
  });
});

/** Runs `fn` with every D1 call of this isolate counted (the Worker's and the DOs'); nothing else may touch D1 meanwhile. */
async function d1Calls<T>(fn: () => Promise<T>): Promise<{ result: T; calls: number }> {
  let calls = 0;
  const undo = interceptD1InPlace(env.DB, () => {
    calls++;
  });
  try {
    return { result: await fn(), calls };
  } finally {
    undo();
  }
}

/** What the DO's storage holds: its tables (none for a DO that never wrote anything) and its alarm. */
const storageOf = (workflowId: string) =>
  runInDurableObject(runStream(env, workflowId), async (_i: RunStream, state) => ({
    tables: state.storage.sql.exec("SELECT name FROM sqlite_master").toArray().length,
    alarm: await state.storage.getAlarm(),
  }));

describe("POST /internal/run-events: runs not started through the edge", () => {
  afterEach(() => vi.restoreAllMocks());

  it("a run with no row (started directly in Temporal) is dropped: acknowledged, logged once, nothing written, D1 read once", async () => {
    const orphan = `hello-${crypto.randomUUID()}`;
    const known = await insertRun(organizationId);
    const warn = vi.spyOn(console, "warn");
    const first = await d1Calls(() =>
      signedPost(PATH, {
        runs: [
          { workflowId: orphan, events: [started("ro"), step("ro", "started"), historyEvent("ro", 1)] },
          { workflowId: known, events: [historyEvent("rk", 1)] },
        ],
      }),
    );
    // Answered as handled (the host does not retry it); the other run of the push is recorded as usual.
    expect(first.result.status).toBe(200);
    expect(await first.result.json()).toEqual({ runs: 2, accepted: 1, duplicates: 0, dropped: 1 });
    // Each DO asked D1 once (neither knows its run), and the history-only event has nothing to project.
    expect(first.calls).toBe(2);
    // The later pushes of the run: dropped again, from memory (no D1 read), and logged only the first time.
    const second = await d1Calls(() =>
      signedPost(PATH, { runs: [{ workflowId: orphan, events: [step("ro", "completed"), closeEvent("ro", 2), finishedEvent("ro")] }] }),
    );
    expect(await second.result.json()).toEqual({ runs: 1, accepted: 0, duplicates: 0, dropped: 1 });
    expect(second.calls).toBe(0);
    const drops = warn.mock.calls.map((args) => String(args[0])).filter((line) => line.includes("run events dropped"));
    expect(drops).toHaveLength(1);
    expect(JSON.parse(drops[0]!)).toMatchObject({ level: "warn", workflowId: orphan });
    // Nothing was written: no table, no alarm; then (the read below creates its schema) an empty log; no D1 row.
    expect(await storageOf(orphan)).toEqual({ tables: 0, alarm: null });
    expect(await log(orphan)).toEqual([]);
    expect(await row(orphan)).toBeNull();
    expect((await log(known)).map((e) => e.sourceKey)).toEqual(["history:rk:1"]);
  });

  it("the per-run route acknowledges a dropped push the same way", async () => {
    const orphan = `hello-${crypto.randomUUID()}`;
    const res = await signedPost(`/internal/runs/${orphan}/events`, { events: [started("rp")] });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ accepted: 0, duplicates: 0, dropped: true });
    expect(await storageOf(orphan)).toEqual({ tables: 0, alarm: null });
  });

  it("a run whose DO lost its storage still records: its row is found in D1", async () => {
    const a = await insertRun(organizationId);
    expect(await (await signedPost(PATH, { runs: [{ workflowId: a, events: [started("rw")] }] })).json()).toMatchObject({ dropped: 0 });
    await runInDurableObject(runStream(env, a), (_i: RunStream, state) => state.storage.deleteAll());
    await evictDurableObject(runStream(env, a));
    expect(await storageOf(a)).toMatchObject({ tables: 0 });
    const res = await signedPost(PATH, {
      runs: [{ workflowId: a, events: [historyEvent("rw", 1), closeEvent("rw", 2), finishedEvent("rw")] }],
    });
    expect(await res.json()).toEqual({ runs: 1, accepted: 3, duplicates: 0, dropped: 0 });
    expect((await log(a)).map((e) => e.sourceKey)).toEqual(["history:rw:1", "history:rw:2", "run:rw:finished"]);
    expect(await row(a)).toMatchObject({ status: "completed" });
  });

  it("a run started through the edge never pays the D1 read: its DO knows it accepted the run", async () => {
    const runUuid = crypto.randomUUID();
    const workflowId = `hello-${runUuid}`;
    const restore = scriptHost(() => Response.json({ workflowId, runId: "rs" }));
    try {
      const reply = await runStream(env, workflowId).start({
        organizationId,
        workflowId,
        runUuid,
        target: { kind: "code", by: { name: "hello" }, input: { name: "Ada" } },
      });
      expect(reply).toMatchObject({ ok: true });
    } finally {
      restore();
    }
    // `run.started` reaches D1 after the start's answer: wait for it, then the DO wakes again with its
    // storage (eviction waits out the start's host-call timeout, START_ATTEMPT_TIMEOUT_MS: hence the test's timeout).
    await vi.waitFor(async () => expect((await row(workflowId))?.status).toBe("running"));
    await evictDurableObject(runStream(env, workflowId));
    // History has nothing to project: the only D1 call the push could make is the admission's read.
    const pushed = await d1Calls(() => signedPost(PATH, { runs: [{ workflowId, events: [historyEvent("rs", 1)] }] }));
    expect(await pushed.result.json()).toEqual({ runs: 1, accepted: 1, duplicates: 0, dropped: 0 });
    expect(pushed.calls).toBe(0);
  }, 30_000);
});
