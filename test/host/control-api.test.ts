import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { type Client, ServiceError } from "@temporalio/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { executionTimeoutFrom } from "../../host/config.ts";
import {
  createControlApi,
  QUERY_WAIT_MS,
  RESET_WAIT_MS,
  START_WAIT_MS,
  TEMPORAL_CALL_WAIT_MS,
  UPDATE_WAIT_MS,
} from "../../host/control-api.ts";
import type { EdgeClient } from "../../host/edge-client.ts";
import type { HistoryRelay } from "../../host/history-relay.ts";
import { SignedRequestNonces } from "../../host/signed-request-nonces.ts";
import { PROGRESS_FIELD_ERROR } from "../../host/workflows/approval.ts";
import { ALWAYS_FAILS_MESSAGE } from "../../host/workflows/examples.ts";
import { MAX_SIGNED_BODY_BYTES } from "../../src/shared/capped-body.ts";
import { describeRunResponse, HOST_PATHS, runResultResponse, startRunResponse } from "../../src/shared/host-api.ts";
import { signRequest } from "../../src/shared/signing.ts";
import { MAX_WORKFLOW_ID_LENGTH } from "../../src/shared/workflow-id.ts";
import { ALWAYS_FAILS_ERROR_DETAILS } from "../support/always-fails.ts";
import { endlessBody, stalledBody } from "../support/endless-bodies.ts";
import { startTestWorker, type TestWorker, testControlApi } from "./temporal-worker.ts";
import { until } from "../support/until.ts";

const SECRET = "host-test-secret-long-enough-for-hmac-sha256"; // test-only
const TASK_QUEUE = `host-test-${process.pid}`;

let client: Client;
let testWorker: TestWorker;
let app: ReturnType<typeof createControlApi>;

async function signed(
  method: string,
  path: string,
  payload?: unknown,
  opts: { secret?: string; now?: number; to?: ReturnType<typeof createControlApi> } = {},
) {
  return signedText(method, path, payload === undefined ? "" : JSON.stringify(payload), opts);
}

/** `signed` with the body as given: JSON that JSON.stringify would not write (nested past its stack). */
async function signedText(
  method: string,
  path: string,
  body: string,
  opts: { secret?: string; now?: number; to?: ReturnType<typeof createControlApi> } = {},
) {
  const headers = await signRequest(opts.secret ?? SECRET, method, path, body, opts.now);
  return (opts.to ?? app).request(path, { method, headers: { ...headers, "content-type": "application/json" }, body: body || undefined });
}

const newId = (name: string) => `${name}-${crypto.randomUUID()}`;

beforeAll(async () => {
  testWorker = await startTestWorker(SECRET, TASK_QUEUE);
  client = testWorker.client;
  app = testControlApi(client, testWorker, SECRET, TASK_QUEUE);
});

afterAll(() => testWorker?.stop());

describe("control API auth", () => {
  it("refuses unsigned requests with 401", async () => {
    const res = await app.request(HOST_PATHS.start, { method: "POST", body: "{}" });
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ error: { code: "missing_signature" } });
  });

  it("refuses a request without a fresh signature of ours before reading its body (a body that never ends is not waited for)", async () => {
    const stale = await signRequest(SECRET, "POST", HOST_PATHS.start, "{}", Date.now() - 10 * 60_000);
    // A fresh, well-formed signature made without the secret too: refused before the body is read.
    const forged = await signRequest("not-the-secret", "POST", HOST_PATHS.start, "{}");
    for (const [headers, code] of [
      [{}, "missing_signature"],
      [stale, "stale_signature"],
      [forged, "bad_signature"],
    ] as const) {
      const res = await app.request(HOST_PATHS.start, {
        method: "POST",
        headers: { ...headers },
        body: stalledBody(),
        duplex: "half",
      } as RequestInit);
      expect(res.status).toBe(401);
      expect(await res.json()).toMatchObject({ error: { code } });
    }
  }, 5_000);

  it("refuses a signed request whose body is over MAX_SIGNED_BODY_BYTES with 413, reading no more of it than that", async () => {
    const headers = await signRequest(SECRET, "POST", HOST_PATHS.start, "{}");
    const endless = endlessBody();
    const res = await app.request(HOST_PATHS.start, {
      method: "POST",
      headers: { ...headers },
      body: endless.body,
      duplex: "half",
    } as RequestInit);
    expect(res.status).toBe(413);
    expect(await res.json()).toMatchObject({ error: { code: "payload_too_large" } });
    expect(endless.pulled()).toBeLessThan(MAX_SIGNED_BODY_BYTES * 2);
  });

  it("refuses a replayed signed request with 401", async () => {
    const headers = { ...(await signRequest(SECRET, "GET", HOST_PATHS.metrics, "")), "content-type": "application/json" };
    expect((await app.request(HOST_PATHS.metrics, { method: "GET", headers })).status).toBe(200);
    const replay = await app.request(HOST_PATHS.metrics, { method: "GET", headers });
    expect(replay.status).toBe(401);
    expect(await replay.json()).toMatchObject({ error: { code: "replayed_signature" } });
  });

  it("security: a signed request replayed after the host restarted (within its signature's lifetime) is refused too", async () => {
    const file = join(mkdtempSync(join(tmpdir(), "outrider-nonces-")), "host.sqlite");
    // Two processes of the host, one after the other, on the same file.
    const before = new SignedRequestNonces(file);
    const hostApp = (nonces: SignedRequestNonces) => testControlApi(client, testWorker, SECRET, TASK_QUEUE, { nonces });
    const headers = { ...(await signRequest(SECRET, "GET", HOST_PATHS.metrics, "")), "content-type": "application/json" };
    expect((await hostApp(before).request(HOST_PATHS.metrics, { method: "GET", headers })).status).toBe(200);
    before.close();
    const after = new SignedRequestNonces(file);
    try {
      const replay = await hostApp(after).request(HOST_PATHS.metrics, { method: "GET", headers });
      expect(replay.status).toBe(401);
      expect(await replay.json()).toMatchObject({ error: { code: "replayed_signature" } });
      // A nonce whose signature has expired may be claimed again (the signature check refuses it anyway).
      expect(after.claim("n-1", Date.now() - 1)).toBe(true);
      expect(after.claim("n-1", Date.now() + 60_000)).toBe(true);
      expect(after.claim("n-1", Date.now() + 60_000)).toBe(false);
    } finally {
      after.close();
      rmSync(dirname(file), { recursive: true, force: true });
    }
  });

  it("security: a signed reset or update replayed through another host (its own nonces) is not done twice", async () => {
    // Two host processes behind one balancer (docs/deploy.md): each remembers only the nonces it
    // accepted, so the replay passes the second host's check; Temporal, which both share, must
    // take it as the same request.
    const [hostA, hostB, hostC] = [0, 1, 2].map(() => testControlApi(client, testWorker, SECRET, TASK_QUEUE));
    const signedInit = async (path: string, payload: unknown) => {
      const body = JSON.stringify(payload);
      return { method: "POST", headers: { ...(await signRequest(SECRET, "POST", path, body)), "content-type": "application/json" }, body };
    };
    const answer = async (res: Response) => [res.status, await res.json()] as [number, Record<string, unknown>];

    // A reset of a run that has ended (as the edge sends it: pinned to the run), replayed at once
    // and again once the run it made has ended too: the same run each time, and no other.
    const resetId = newId("two_steps");
    const started = await signed("POST", HOST_PATHS.start, {
      workflowId: resetId,
      workflowName: "two_steps",
      input: { text: "replay me" },
    });
    const { runId: firstRunId } = startRunResponse.parse(await started.json());
    await client.workflow.getHandle(resetId).result();
    const reset = await signedInit(HOST_PATHS.reset(resetId), { stepName: "countWords", runId: firstRunId });
    const [status, made] = await answer(await hostA!.request(HOST_PATHS.reset(resetId), reset));
    expect(status).toBe(200);
    expect(made.runId).not.toBe(firstRunId);
    expect(await answer(await hostB!.request(HOST_PATHS.reset(resetId), reset))).toEqual([200, made]);
    await client.workflow.getHandle(resetId).result();
    expect(await answer(await hostC!.request(HOST_PATHS.reset(resetId), reset))).toEqual([200, made]);
    expect((await client.workflow.getHandle(resetId).describe()).runId).toBe(made.runId);

    const updateId = newId("approval");
    await signed("POST", HOST_PATHS.start, { workflowId: updateId, workflowName: "approval", input: { request: "replayed update" } });
    const update = await signedInit(HOST_PATHS.interact(updateId, "update", "setPriority"), { payload: { priority: 4 } });
    for (const host of [hostA!, hostB!]) {
      expect(await answer(await host.request(HOST_PATHS.interact(updateId, "update", "setPriority"), update))).toEqual([
        200,
        { result: { priority: 4 } },
      ]);
    }
    const history = await client.workflow.getHandle(updateId).fetchHistory();
    expect(history.events?.filter((e) => e.workflowExecutionUpdateAcceptedEventAttributes)).toHaveLength(1);
    await client.workflow.getHandle(updateId).terminate("test over");
  }, 30_000);

  it("security: a signed signal replayed through another host (its own nonces) is delivered once", async () => {
    // As a reset or an update: the replay passes the second host's nonce check, so Temporal, which
    // both share, must take the signal with the same request id as the same signal.
    const [hostA, hostB] = [0, 1].map(() => testControlApi(client, testWorker, SECRET, TASK_QUEUE));
    const workflowId = newId("approval");
    await signed("POST", HOST_PATHS.start, { workflowId, workflowName: "approval", input: { request: "replayed signal" } });
    try {
      const path = HOST_PATHS.interact(workflowId, "signal", "approve");
      // An empty approve is taken and ignored by the workflow: the run stays open for the replay.
      const body = JSON.stringify({ payload: {} });
      const init = {
        method: "POST",
        headers: { ...(await signRequest(SECRET, "POST", path, body)), "content-type": "application/json" },
        body,
      };
      for (const host of [hostA!, hostB!]) expect((await host.request(path, init)).status).toBe(200);
      // A signal that arrives while a workflow task is running waits in Temporal's buffer, outside the
      // history, until that task completes: a query goes through a workflow task of its own after it.
      await signed("POST", HOST_PATHS.interact(workflowId, "query", "progress"), {});
      const history = await client.workflow.getHandle(workflowId).fetchHistory();
      expect(history.events?.filter((e) => e.workflowExecutionSignaledEventAttributes)).toHaveLength(1);
    } finally {
      await client.workflow.getHandle(workflowId).terminate("test over");
    }
  });

  it("refuses a stale signature with 401", async () => {
    const res = await signed(
      "POST",
      HOST_PATHS.start,
      { workflowId: newId("hello"), workflowName: "hello", input: { name: "x" } },
      { now: Date.now() - 3_600_000 },
    );
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ error: { code: "stale_signature" } });
  });

  it("refuses a request signed with another secret with 401", async () => {
    const res = await signed("GET", HOST_PATHS.describe(newId("hello")), undefined, { secret: "not-the-secret" });
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ error: { code: "bad_signature" } });
  });

  it("answers /health without a signature", async () => {
    expect((await app.request("/health")).status).toBe(200);
  });
});

/** Every history call the host's client makes from now on, and whether it has settled; `restore` stops watching. */
function trackHistoryCalls() {
  const calls: Array<{ settled: boolean }> = [];
  const service = client.workflowService;
  const original = service.getWorkflowExecutionHistory;
  service.getWorkflowExecutionHistory = ((...args: Parameters<typeof original>) => {
    const call = { settled: false };
    calls.push(call);
    const answer = original.apply(service, args);
    void answer.then(
      () => (call.settled = true),
      () => (call.settled = true),
    );
    return answer;
  }) as typeof original;
  return { calls, restore: () => (service.getWorkflowExecutionHistory = original) };
}

describe("control API over real Temporal", () => {
  it("answers /v1/ready (signed) once Temporal answers", async () => {
    const res = await signed("GET", HOST_PATHS.ready);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: true });
    expect((await app.request(HOST_PATHS.ready)).status).toBe(401);
  });

  it("starts hello, describes it, and waits for its result", async () => {
    const workflowId = newId("hello");
    const start = await signed("POST", HOST_PATHS.start, { workflowId, workflowName: "hello", input: { name: "Ada" } });
    expect(start.status).toBe(200);
    const started = startRunResponse.parse(await start.json());
    expect(started.workflowId).toBe(workflowId);

    const result = runResultResponse.parse(await (await signed("GET", `${HOST_PATHS.result(workflowId)}?waitMs=30000`)).json());
    expect(result).toMatchObject({ status: "completed", output: { greeting: "Hello, Ada!" }, error: null, runId: started.runId });

    const described = describeRunResponse.parse(await (await signed("GET", HOST_PATHS.describe(workflowId))).json());
    expect(described).toMatchObject({ workflowName: "hello", status: "completed", taskQueue: TASK_QUEUE });
    expect(described.closeTime).not.toBeNull();
  });

  it("runs two_steps as two activities in sequence", async () => {
    const workflowId = newId("two_steps");
    await signed("POST", HOST_PATHS.start, { workflowId, workflowName: "two_steps", input: { text: "one two three" } });
    const result = runResultResponse.parse(await (await signed("GET", `${HOST_PATHS.result(workflowId)}?waitMs=30000`)).json());
    expect(result.output).toEqual({ words: 3, shouted: "ONE TWO THREE" });
    const history = await client.workflow.getHandle(workflowId).fetchHistory();
    const scheduled = history
      .events!.filter((e) => e.activityTaskScheduledEventAttributes)
      .map((e) => e.activityTaskScheduledEventAttributes!.activityType!.name);
    expect(scheduled).toEqual(["countWords", "shout"]);
  });

  it("reports always_fails as failed with its message, after one step", async () => {
    const workflowId = newId("always_fails");
    await signed("POST", HOST_PATHS.start, { workflowId, workflowName: "always_fails", input: {} });
    const result = runResultResponse.parse(await (await signed("GET", `${HOST_PATHS.result(workflowId)}?waitMs=30000`)).json());
    expect(result).toMatchObject({ status: "failed", output: null, error: ALWAYS_FAILS_MESSAGE });
    expect(result.errorDetails).toEqual(ALWAYS_FAILS_ERROR_DETAILS);
    const history = await client.workflow.getHandle(workflowId).fetchHistory();
    expect(history.events!.filter((e) => e.activityTaskCompletedEventAttributes)).toHaveLength(1);
  });

  it("answers a result call without waiting while the run is open", async () => {
    const workflowId = newId("hello");
    // Started on a queue no worker polls, so it stays open.
    await client.workflow.start("hello", { taskQueue: `${TASK_QUEUE}-idle`, workflowId, args: [{ name: "x" }] });
    const t0 = Date.now();
    const result = runResultResponse.parse(await (await signed("GET", `${HOST_PATHS.result(workflowId)}?waitMs=300`)).json());
    expect(result).toMatchObject({ status: "running", output: null, error: null });
    expect(Date.now() - t0).toBeLessThan(10_000);
    await client.workflow.getHandle(workflowId).terminate("test cleanup");
  });

  it("a wait that runs out stops its poll of Temporal (a long run is not polled on behalf of a caller who left)", async () => {
    const workflowId = newId("hello");
    const started = await client.workflow.start("hello", { taskQueue: `${TASK_QUEUE}-idle`, workflowId, args: [{ name: "x" }] });
    const { calls, restore } = trackHistoryCalls();
    try {
      // Without the run's id (a read), and with it (the DO that started the run).
      for (const query of ["waitMs=300", `waitMs=300&runId=${started.firstExecutionRunId}`]) {
        const result = await signed("GET", `${HOST_PATHS.result(workflowId)}?${query}`);
        expect(runResultResponse.parse(await result.json()), query).toMatchObject({ status: "running" });
      }
      expect(calls.length).toBeGreaterThan(0);
      // Temporal holds a long poll for about 20 s; a stopped one ends at once.
      await until(() => calls.every((c) => c.settled), 5_000);
      expect(calls.filter((c) => !c.settled)).toEqual([]);
    } finally {
      restore();
      await client.workflow.getHandle(workflowId).terminate("test cleanup");
    }
  });

  it("a caller that leaves a result wait stops its poll of Temporal (it is not held for the rest of waitMs)", async () => {
    const workflowId = newId("hello");
    const started = await client.workflow.start("hello", { taskQueue: `${TASK_QUEUE}-idle`, workflowId, args: [{ name: "x" }] });
    const { calls, restore } = trackHistoryCalls();
    try {
      // Without the run's id (a read), and with it (the DO that started the run).
      for (const query of ["waitMs=100000", `waitMs=100000&runId=${started.firstExecutionRunId}`]) {
        const path = `${HOST_PATHS.result(workflowId)}?${query}`;
        const leaving = new AbortController();
        const headers = { ...(await signRequest(SECRET, "GET", path, "")), "content-type": "application/json" };
        const answer = app.request(path, { method: "GET", headers, signal: leaving.signal });
        await until(() => calls.length > 0, 5_000);
        leaving.abort();
        // Temporal holds a long poll for about 20 s, and the wait would go on for 100 s; a stopped one ends at once.
        await until(() => calls.every((c) => c.settled), 5_000);
        expect(
          calls.filter((c) => !c.settled),
          query,
        ).toEqual([]);
        await answer;
        calls.length = 0;
      }
    } finally {
      restore();
      await client.workflow.getHandle(workflowId).terminate("test cleanup");
    }
  }, 30_000);

  it("refuses an unknown workflow name with 404 and a duplicate workflow id with 409", async () => {
    const unknown = await signed("POST", HOST_PATHS.start, { workflowId: newId("nope"), workflowName: "nope", input: {} });
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toMatchObject({ error: { code: "workflow_not_found" } });

    const workflowId = newId("hello");
    await signed("POST", HOST_PATHS.start, { workflowId, workflowName: "hello", input: { name: "a" } });
    const again = await signed("POST", HOST_PATHS.start, { workflowId, workflowName: "hello", input: { name: "a" } });
    expect(again.status).toBe(409);
  });

  it("answers 404 run_not_found for a workflow id Temporal does not know", async () => {
    const res = await signed("GET", HOST_PATHS.describe(newId("hello")));
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ error: { code: "run_not_found" } });
  });

  it("answers 400 for a malformed start request", async () => {
    const res = await signed("POST", HOST_PATHS.start, { workflowName: "hello" });
    expect(res.status).toBe(400);
  });
});

describe("the result of a run the caller names (runId: the run its DO just started)", () => {
  const resultOf = async (workflowId: string, query: string) => {
    const res = await signed("GET", `${HOST_PATHS.result(workflowId)}?${query}`);
    expect(res.status).toBe(200);
    return runResultResponse.parse(await res.json());
  };

  it("a completed run: the same answer as without runId (ids, close time, output), from its close event", async () => {
    const workflowId = newId("hello");
    const started = startRunResponse.parse(
      await (await signed("POST", HOST_PATHS.start, { workflowId, workflowName: "hello", input: { name: "Ada" } })).json(),
    );
    const named = await resultOf(workflowId, `waitMs=30000&runId=${started.runId}`);
    expect(named).toMatchObject({
      workflowId,
      runId: started.runId,
      status: "completed",
      output: { greeting: "Hello, Ada!" },
      error: null,
    });
    expect(named.closeTime).not.toBeNull();
    expect(await resultOf(workflowId, "waitMs=30000")).toEqual(named);
  });

  it("a failed run: the same answer as without runId", async () => {
    const workflowId = newId("always_fails");
    const started = startRunResponse.parse(
      await (await signed("POST", HOST_PATHS.start, { workflowId, workflowName: "always_fails", input: {} })).json(),
    );
    const named = await resultOf(workflowId, `waitMs=30000&runId=${started.runId}`);
    expect(named).toMatchObject({ runId: started.runId, status: "failed", output: null, error: ALWAYS_FAILS_MESSAGE });
    expect(await resultOf(workflowId, "waitMs=30000")).toEqual(named);
  });

  it("a run still open when the wait ends: running, as without runId", async () => {
    const workflowId = newId("hello");
    const handle = await client.workflow.start("hello", { taskQueue: `${TASK_QUEUE}-idle`, workflowId, args: [{ name: "x" }] });
    const named = await resultOf(workflowId, `waitMs=300&runId=${handle.firstExecutionRunId}`);
    expect(named).toMatchObject({ runId: handle.firstExecutionRunId, status: "running", output: null, error: null, closeTime: null });
    await handle.terminate("test cleanup");
  });

  it("inherited names (constructor, toString, __proto__) are no workflows: 404, nothing started in Temporal", async () => {
    for (const workflowName of ["constructor", "toString", "__proto__", "hasOwnProperty"]) {
      const workflowId = newId("inherited");
      const res = await signed("POST", HOST_PATHS.start, { workflowId, workflowName, input: {} });
      expect(res.status, workflowName).toBe(404);
      expect(await res.json()).toMatchObject({ error: { code: "workflow_not_found" } });
      await expect(client.workflow.getHandle(workflowId).describe()).rejects.toThrow();
    }
  });

  it("a workflow id longer than the edge's limit (MAX_WORKFLOW_ID_LENGTH) is 400 invalid_request: the host starts no run the edge could not name (past Temporal's own limit it was a 500)", async () => {
    const res = await signed("POST", HOST_PATHS.start, {
      workflowId: "w".repeat(MAX_WORKFLOW_ID_LENGTH + 1),
      workflowName: "hello",
      input: { name: "a" },
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: { code: "invalid_request" } });
  });

  it("a start whose input Temporal refuses (past its blob size limit) is 413 payload_too_large and starts nothing, not a 500", async () => {
    const workflowId = newId("hello");
    // Temporal's dev server refuses a payload over 2 MB (limit.blobSize.error); the host's own cap is higher.
    const res = await signed("POST", HOST_PATHS.start, { workflowId, workflowName: "hello", input: { name: "x".repeat(3 * 1024 * 1024) } });
    expect(res.status).toBe(413);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe("payload_too_large");
    expect(body.error.message).toMatch(/Temporal refused the start: .*size/i);
    await expect(client.workflow.getHandle(workflowId).describe()).rejects.toThrow();
  });

  it("a run id that is not a UUID is refused with 400; an unknown workflow is still 404", async () => {
    const workflowId = newId("hello");
    const bad = await signed("GET", `${HOST_PATHS.result(workflowId)}?waitMs=100&runId=${encodeURIComponent("../x")}`);
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ error: { code: "invalid_request" } });
    const unknown = await signed("GET", `${HOST_PATHS.result(workflowId)}?waitMs=100&runId=${crypto.randomUUID()}`);
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toMatchObject({ error: { code: "run_not_found" } });
  });
});

describe("a run's execution timeout (Output's TEMPORAL_WORKFLOW_EXECUTION_TIMEOUT, default 24h)", () => {
  const timeoutOf = async (workflowId: string) =>
    Number((await client.workflow.getHandle(workflowId).describe()).raw.executionConfig?.workflowExecutionTimeout?.seconds);

  it("a start that names no limit gets the host's default, 24 h unless configured; one that names its own keeps it", async () => {
    const unnamed = newId("approval");
    await signed("POST", HOST_PATHS.start, { workflowId: unnamed, workflowName: "approval", input: { request: "default" } });
    expect(await timeoutOf(unnamed)).toBe(24 * 3600);
    const named = newId("approval");
    await signed("POST", HOST_PATHS.start, {
      workflowId: named,
      workflowName: "approval",
      input: { request: "own" },
      executionTimeoutMs: 90_000,
    });
    expect(await timeoutOf(named)).toBe(90);
    for (const id of [unnamed, named]) await client.workflow.getHandle(id).terminate("test over");
  });

  it("a run that waits past the default ends timed_out (an approval nobody answers does not stay open for ever)", async () => {
    const shortLimit = testControlApi(client, testWorker, SECRET, TASK_QUEUE, { defaultExecutionTimeoutMs: executionTimeoutFrom("2s") });
    const workflowId = newId("approval");
    const body = JSON.stringify({ workflowId, workflowName: "approval", input: { request: "nobody answers" } });
    const headers = await signRequest(SECRET, "POST", HOST_PATHS.start, body);
    expect(
      (await shortLimit.request(HOST_PATHS.start, { method: "POST", headers: { ...headers, "content-type": "application/json" }, body }))
        .status,
    ).toBe(200);
    const result = runResultResponse.parse(await (await signed("GET", `${HOST_PATHS.result(workflowId)}?waitMs=30000`)).json());
    expect(result.status).toBe("timed_out");
  });

  it("TEMPORAL_WORKFLOW_EXECUTION_TIMEOUT reads Temporal's durations and refuses anything else, or under 1 s", () => {
    expect([executionTimeoutFrom("90m"), executionTimeoutFrom("3600000"), executionTimeoutFrom(" ")]).toEqual([
      5_400_000, 3_600_000, 86_400_000,
    ]);
    for (const bad of ["soon", "-5s", "10", "0"]) expect(() => executionTimeoutFrom(bad)).toThrow(/TEMPORAL_WORKFLOW_EXECUTION_TIMEOUT/);
  });
});

describe("interacting with a running approval", () => {
  const interact = (workflowId: string, kind: "signal" | "query" | "update", name: string, payload?: unknown) =>
    signed("POST", HOST_PATHS.interact(workflowId, kind, name), { payload });

  it("query, update, signal; then handlers on the finished run are refused", async () => {
    const workflowId = newId("approval");
    await signed("POST", HOST_PATHS.start, { workflowId, workflowName: "approval", input: { request: "buy a boat" } });
    const progress = await interact(workflowId, "query", "progress");
    expect(await progress.json()).toEqual({ result: { stage: "waiting_for_approval", priority: 3, approvedBy: null } });
    expect(await (await interact(workflowId, "query", "progress", { field: "stage" })).json()).toEqual({ result: "waiting_for_approval" });
    // A query handler that throws is the handler's failure (422), not a missing handler (404).
    const failed = await interact(workflowId, "query", "progress", { field: "secret" });
    expect(failed.status).toBe(422);
    expect(await failed.json()).toMatchObject({ error: { code: "handler_failed", message: PROGRESS_FIELD_ERROR } });
    expect(await (await interact(workflowId, "query", "nope")).json()).toMatchObject({ error: { code: "handler_not_found" } });

    const updated = await interact(workflowId, "update", "setPriority", { priority: 5 });
    expect(await updated.json()).toEqual({ result: { priority: 5 } });
    const rejected = await interact(workflowId, "update", "setPriority", { priority: 9 });
    expect(rejected.status).toBe(422);
    expect(await rejected.json()).toMatchObject({ error: { code: "handler_failed", message: "priority must be an integer from 1 to 5" } });

    expect((await interact(workflowId, "signal", "nope")).status).toBe(404);
    expect((await interact(workflowId, "signal", "approve", { approvedBy: "Grace" })).status).toBe(200);
    const result = runResultResponse.parse(await (await signed("GET", `${HOST_PATHS.result(workflowId)}?waitMs=30000`)).json());
    expect(result.output).toEqual({ request: "buy a boat", approvedBy: "Grace", priority: 5 });

    const late = await interact(workflowId, "signal", "approve", { approvedBy: "Ada" });
    expect(late.status).toBe(409);
    expect(await late.json()).toMatchObject({ error: { code: "run_finished" } });
  });

  it("an update no worker takes (its run's workers gone, or its workflow tasks failing) is 504 update_outcome_unknown after the wait, not a request hanging until the run ends", async () => {
    // The approval runs on a task queue no worker polls: its update is never accepted.
    const workflowId = newId("approval");
    await client.workflow.start("approval", { taskQueue: `nobody-${crypto.randomUUID()}`, workflowId, args: [{ request: "stranded" }] });
    try {
      const waited = testControlApi(client, testWorker, SECRET, TASK_QUEUE, { updateWaitMs: 1_000 });
      const started = Date.now();
      const res = await signed(
        "POST",
        HOST_PATHS.interact(workflowId, "update", "setPriority"),
        { payload: { priority: 4 } },
        { to: waited },
      );
      expect(res.status).toBe(504);
      expect(await res.json()).toMatchObject({ error: { code: "update_outcome_unknown" } });
      expect(Date.now() - started).toBeLessThan(10_000);
    } finally {
      await client.workflow.getHandle(workflowId).terminate("test over");
    }
  }, 20_000);

  it("an update whose answer Temporal's connection lost (gRPC UNAVAILABLE once it was sent) is 504 update_outcome_unknown, not a 503 to retry: it may be applied", async () => {
    const workflowId = newId("approval");
    await signed("POST", HOST_PATHS.start, { workflowId, workflowName: "approval", input: { request: "lost answer" } });
    const service = client.workflowService;
    const original = service.updateWorkflowExecution;
    // Temporal takes the update; its answer is lost on the way back (the connection dropped).
    service.updateWorkflowExecution = (async (...args: Parameters<typeof original>) => {
      await original.apply(service, args);
      throw Object.assign(new Error("14 UNAVAILABLE: Connection dropped"), {
        code: 14,
        details: "Connection dropped",
        metadata: { get: () => [] },
      });
    }) as unknown as typeof original;
    try {
      const res = await signed("POST", HOST_PATHS.interact(workflowId, "update", "setPriority"), { payload: { priority: 4 } });
      expect([res.status, ((await res.json()) as { error: { code: string } }).error.code]).toEqual([504, "update_outcome_unknown"]);
    } finally {
      service.updateWorkflowExecution = original;
    }
    try {
      // It was applied: a "retry later" would have applied it twice.
      expect(await (await signed("POST", HOST_PATHS.interact(workflowId, "query", "progress"), {})).json()).toMatchObject({
        result: { priority: 4 },
      });
    } finally {
      await client.workflow.getHandle(workflowId).terminate("test over");
    }
  });

  it("a signal whose answer Temporal's connection lost (gRPC UNAVAILABLE once it was sent) is 504 signal_outcome_unknown, not a 503 to retry: it may be applied", async () => {
    const workflowId = newId("approval");
    await signed("POST", HOST_PATHS.start, { workflowId, workflowName: "approval", input: { request: "lost signal answer" } });
    const service = client.workflowService;
    const original = service.signalWorkflowExecution;
    // Temporal takes the signal; its answer is lost on the way back (the connection dropped).
    service.signalWorkflowExecution = (async (...args: Parameters<typeof original>) => {
      await original.apply(service, args);
      throw Object.assign(new Error("14 UNAVAILABLE: Connection dropped"), {
        code: 14,
        details: "Connection dropped",
        metadata: { get: () => [] },
      });
    }) as unknown as typeof original;
    try {
      const res = await signed("POST", HOST_PATHS.interact(workflowId, "signal", "approve"), { payload: { approvedBy: "ada" } });
      expect([res.status, ((await res.json()) as { error: { code: string } }).error.code]).toEqual([504, "signal_outcome_unknown"]);
    } finally {
      service.signalWorkflowExecution = original;
    }
    // It was applied: a "retry later" would have sent it twice (Temporal dedups only the same request id).
    const handle = client.workflow.getHandle(workflowId);
    expect(await handle.result()).toMatchObject({ approvedBy: "ada" });
  });

  it("a query no worker answers (its run's workers gone, or its workflow tasks failing) is 504 query_timed_out after the wait, not a 500", async () => {
    // The approval runs on a task queue no worker polls: Temporal times its query out.
    const workflowId = newId("approval");
    await client.workflow.start("approval", { taskQueue: `nobody-${crypto.randomUUID()}`, workflowId, args: [{ request: "stranded" }] });
    try {
      const waited = testControlApi(client, testWorker, SECRET, TASK_QUEUE, { queryWaitMs: 1_000 });
      const started = Date.now();
      const res = await signed("POST", HOST_PATHS.interact(workflowId, "query", "progress"), {}, { to: waited });
      expect(res.status).toBe(504);
      expect(await res.json()).toMatchObject({ error: { code: "query_timed_out", message: expect.stringContaining('"progress"') } });
      expect(Date.now() - started).toBeLessThan(10_000);
    } finally {
      await client.workflow.getHandle(workflowId).terminate("test over");
    }
  }, 20_000);

  it("a query to a run that closed before it ran any workflow code is 409 message_rejected (Temporal's FAILED_PRECONDITION), not a 500", async () => {
    // No worker polls its task queue, and it is terminated: it closed before its first workflow task.
    const workflowId = newId("approval");
    await client.workflow.start("approval", {
      taskQueue: `nobody-${crypto.randomUUID()}`,
      workflowId,
      args: [{ request: "closed early" }],
    });
    await client.workflow.getHandle(workflowId).terminate("closed before any workflow task");
    const res = await signed("POST", HOST_PATHS.interact(workflowId, "query", "progress"), {});
    expect(res.status).toBe(409);
    expect(await res.json()).toMatchObject({
      error: { code: "message_rejected", message: expect.stringContaining("Temporal refused the query for this run") },
    });
  });

  it("a query whose wait runs out while Temporal's client is between retries (gRPC CANCELLED, not DEADLINE_EXCEEDED) is the same 504", async () => {
    const workflowId = newId("approval");
    await signed("POST", HOST_PATHS.start, { workflowId, workflowName: "approval", input: { request: "cancelled query" } });
    /** A client whose queries fail as @temporalio/client's retry interceptor fails them: CANCELLED, `afterMs` in. */
    const cancelling = (afterMs: number) =>
      new Proxy(client, {
        get(target, prop) {
          if (prop !== "workflow") {
            const value = Reflect.get(target, prop, target);
            return typeof value === "function" ? value.bind(target) : value;
          }
          return new Proxy(target.workflow, {
            get(w, p) {
              if (p !== "getHandle") return Reflect.get(w, p, w);
              return (id: string) =>
                new Proxy(w.getHandle(id), {
                  get(h, q) {
                    if (q !== "query") return Reflect.get(h, q, h);
                    return async () => {
                      await new Promise((r) => setTimeout(r, afterMs));
                      const grpc = Object.assign(new Error("1 CANCELLED: Call cancelled"), { code: 1, details: "Call cancelled" });
                      throw Object.assign(new Error("Failed to query Workflow"), { cause: grpc });
                    };
                  },
                });
            },
          });
        },
      });
    try {
      const late = testControlApi(cancelling(400), testWorker, SECRET, TASK_QUEUE, { queryWaitMs: 300 });
      const timedOut = await signed("POST", HOST_PATHS.interact(workflowId, "query", "progress"), {}, { to: late });
      expect([timedOut.status, ((await timedOut.json()) as { error: { code: string } }).error.code]).toEqual([504, "query_timed_out"]);
      // Cancelled before the wait was out: not a timeout, and not told as one.
      const early = testControlApi(cancelling(0), testWorker, SECRET, TASK_QUEUE, { queryWaitMs: 5_000 });
      expect((await signed("POST", HOST_PATHS.interact(workflowId, "query", "progress"), {}, { to: early })).status).toBe(500);
    } finally {
      await client.workflow.getHandle(workflowId).terminate("test over");
    }
  });

  it("a signal, update or terminate that reaches a run which ended since it was found open is 409 run_finished, not 404 for a run that exists", async () => {
    for (const [kind, path, payload] of [
      ["signal", (id: string) => HOST_PATHS.interact(id, "signal", "approve"), { payload: { approvedBy: "Ada" } }],
      ["update", (id: string) => HOST_PATHS.interact(id, "update", "setPriority"), { payload: { priority: 2 } }],
      ["terminate", (id: string) => HOST_PATHS.terminate(id), {}],
    ] as const) {
      const workflowId = newId("approval");
      await signed("POST", HOST_PATHS.start, { workflowId, workflowName: "approval", input: { request: `racing ${kind}` } });
      // A client whose message to the run goes out just after the run ended (terminated in between).
      const late =
        <T>(send: () => Promise<T>) =>
        async () => {
          await client.workflow.getHandle(workflowId).terminate("ended meanwhile");
          return send();
        };
      const racing = new Proxy(client, {
        get(target, prop) {
          // A signal goes to Temporal's service itself (with the signed request's nonce as its id).
          if (prop === "workflowService") {
            return new Proxy(target.workflowService, {
              get(service, method) {
                const value = Reflect.get(service, method, service);
                if (method !== "signalWorkflowExecution" || typeof value !== "function") return value;
                return (...args: unknown[]) => late(() => value.apply(service, args))();
              },
            });
          }
          if (prop !== "workflow") return Reflect.get(target, prop, target);
          return new Proxy(target.workflow, {
            get(w, p) {
              if (p !== "getHandle") return Reflect.get(w, p, w);
              return (id: string) => {
                const handle = w.getHandle(id);
                return new Proxy(handle, {
                  get(h, q) {
                    const value = Reflect.get(h, q, h);
                    if (!["signal", "executeUpdate", "terminate"].includes(String(q)) || typeof value !== "function") return value;
                    return (...args: unknown[]) => late(() => value.apply(h, args))();
                  },
                });
              };
            },
          });
        },
      });
      const api = testControlApi(racing, testWorker, SECRET, TASK_QUEUE);
      const body = JSON.stringify(payload);
      const res = await api.request(path(workflowId), {
        method: "POST",
        headers: { ...(await signRequest(SECRET, "POST", path(workflowId), body)), "content-type": "application/json" },
        body,
      });
      const answer = (await res.json()) as { error?: { code: string } };
      expect([kind, res.status, answer.error?.code]).toEqual([kind, 409, "run_finished"]);
    }
  }, 30_000);

  it("signal resume (Output's feedback) approves too; a signal without a payload is ignored, not a crash", async () => {
    const workflowId = newId("approval");
    await signed("POST", HOST_PATHS.start, { workflowId, workflowName: "approval", input: { request: "feedback" } });
    expect((await interact(workflowId, "signal", "approve")).status).toBe(200);
    expect((await interact(workflowId, "signal", "resume", { unrelated: true })).status).toBe(200);
    const waiting = await interact(workflowId, "query", "progress");
    expect(await waiting.json()).toEqual({ result: { stage: "waiting_for_approval", priority: 3, approvedBy: null } });
    expect((await interact(workflowId, "signal", "resume", { approvedBy: "Ada" })).status).toBe(200);
    const result = runResultResponse.parse(await (await signed("GET", `${HOST_PATHS.result(workflowId)}?waitMs=30000`)).json());
    expect(result.output).toEqual({ request: "feedback", approvedBy: "Ada", priority: 3 });
  });

  it("cancel runs the cleanup step and ends cancelled; terminate is immediate; both 409 once finished", async () => {
    const a = newId("approval");
    await signed("POST", HOST_PATHS.start, { workflowId: a, workflowName: "approval", input: { request: "a" } });
    expect((await signed("POST", HOST_PATHS.cancel(a), {})).status).toBe(200);
    const cancelled = runResultResponse.parse(await (await signed("GET", `${HOST_PATHS.result(a)}?waitMs=30000`)).json());
    expect(cancelled.status).toBe("cancelled");
    const history = await client.workflow.getHandle(a).fetchHistory();
    const steps = history
      .events!.filter((e) => e.activityTaskScheduledEventAttributes)
      .map((e) => e.activityTaskScheduledEventAttributes!.activityType!.name);
    expect(steps).toEqual(["cleanupApproval"]);
    expect((await signed("POST", HOST_PATHS.cancel(a), {})).status).toBe(409);

    const b = newId("approval");
    await signed("POST", HOST_PATHS.start, { workflowId: b, workflowName: "approval", input: { request: "b" } });
    expect((await signed("POST", HOST_PATHS.terminate(b), { reason: "not needed" })).status).toBe(200);
    const terminated = runResultResponse.parse(await (await signed("GET", `${HOST_PATHS.result(b)}?waitMs=30000`)).json());
    expect(terminated).toMatchObject({ status: "terminated", error: "not needed" });
    expect((await signed("POST", HOST_PATHS.terminate(b), {})).status).toBe(409);
  });

  it("a pinned cancel or terminate acts on that run only: an earlier run that has ended is 409, and the workflow's current run is left alone", async () => {
    for (const [path, body] of [
      [HOST_PATHS.cancel, {}],
      [HOST_PATHS.terminate, { reason: "pinned" }],
    ] as const) {
      const workflowId = newId("approval");
      const first = await client.workflow.start("approval", { taskQueue: TASK_QUEUE, workflowId, args: [{ request: "first" }] });
      await first.terminate("replaced");
      // The same workflow id runs again (as after a reset or a continue-as-new: a newer run).
      const second = await client.workflow.start("approval", { taskQueue: TASK_QUEUE, workflowId, args: [{ request: "second" }] });
      try {
        const earlier = await signed("POST", path(workflowId), { ...body, runId: first.firstExecutionRunId });
        expect(earlier.status, path(workflowId)).toBe(409);
        expect(await earlier.json()).toMatchObject({ error: { code: "run_finished" } });
        expect((await client.workflow.getHandle(workflowId, second.firstExecutionRunId).describe()).status.name).toBe("RUNNING");
        // Pinned to the current run, it acts on it; either way the answer names the run acted on.
        const pinned = await signed("POST", path(workflowId), { ...body, runId: second.firstExecutionRunId });
        expect(pinned.status).toBe(200);
        expect(((await pinned.json()) as { runId?: string }).runId).toBe(second.firstExecutionRunId);
        const after = await client.workflow.getHandle(workflowId, second.firstExecutionRunId).describe();
        expect(["RUNNING", "CANCELED", "TERMINATED"]).toContain(after.status.name);
        if (path === HOST_PATHS.terminate) expect(after.status.name).toBe("TERMINATED");
      } finally {
        await client.workflow
          .getHandle(workflowId)
          .terminate("test over")
          .catch(() => undefined);
      }
    }
  });
});

describe("idempotent starts by accept id (the edge's start outbox)", () => {
  const start = (workflowId: string, acceptId: string, retry: boolean) =>
    signed("POST", HOST_PATHS.start, { workflowId, workflowName: "hello", input: { name: "once" }, acceptId, retry });
  const executions = async (workflowId: string) => {
    const ids: string[] = [];
    for await (const e of client.workflow.list({ query: `WorkflowId = '${workflowId}'` })) ids.push(e.runId);
    return ids;
  };
  /**
   * The run ids Temporal lists for the workflow id. Its visibility lags behind a start: polled until
   * a second execution shows up (one too many), or for 2 s once the first has (5 s at most).
   */
  const executionsSeen = async (workflowId: string) => {
    const since = Date.now();
    let ids: string[] = [];
    while (Date.now() - since < 5_000) {
      ids = await executions(workflowId);
      if (ids.length >= 2 || (ids.length === 1 && Date.now() - since >= 2_000)) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    return ids;
  };

  it("a retry with the same accept id answers with the first attempt's run, even after it ended: one execution", async () => {
    const workflowId = newId("hello");
    const acceptId = crypto.randomUUID();
    const first = startRunResponse.parse(await (await start(workflowId, acceptId, false)).json());
    // While it runs, and again after it completed (Temporal would allow a new run under a closed id).
    const again = startRunResponse.parse(await (await start(workflowId, acceptId, true)).json());
    expect(again.runId).toBe(first.runId);
    await client.workflow.getHandle(workflowId).result();
    const late = startRunResponse.parse(await (await start(workflowId, acceptId, true)).json());
    expect(late.runId).toBe(first.runId);
    expect(await executionsSeen(workflowId)).toEqual([first.runId]);
  });

  it("a retry that finds the first attempt's run follows its history (the host may have restarted since that attempt)", async () => {
    const follows: Array<[string, string | undefined]> = [];
    const relay = { follow: (workflowId: string, runId?: string) => void follows.push([workflowId, runId]) } as unknown as HistoryRelay;
    const spied = testControlApi(client, testWorker, SECRET, TASK_QUEUE, { relay });
    const startOn = async (retry: boolean) => {
      const body = JSON.stringify({ workflowId, workflowName: "hello", input: { name: "once" }, acceptId, retry });
      const headers = await signRequest(SECRET, "POST", HOST_PATHS.start, body);
      return startRunResponse.parse(
        await (await spied.request(HOST_PATHS.start, { method: "POST", headers: { ...headers }, body })).json(),
      );
    };
    const workflowId = newId("hello");
    const acceptId = crypto.randomUUID();
    const first = await startOn(false);
    expect(follows).toEqual([[workflowId, first.runId]]);
    follows.length = 0;
    expect((await startOn(true)).runId).toBe(first.runId);
    expect(follows).toEqual([[workflowId, first.runId]]);
  });

  it("a retry whose workflow has left the catalog since still answers with the first attempt's run: it exists, so it is no refusal", async () => {
    const workflowId = newId("hello");
    const acceptId = crypto.randomUUID();
    const first = startRunResponse.parse(await (await start(workflowId, acceptId, false)).json());
    // The same start retried after a deploy that removed the workflow (here: a name this host does not have).
    const retried = await signed("POST", HOST_PATHS.start, { workflowId, workflowName: "gone_since", input: {}, acceptId, retry: true });
    expect(retried.status).toBe(200);
    expect(startRunResponse.parse(await retried.json()).runId).toBe(first.runId);
    // A first attempt (or a retry no earlier attempt reached Temporal with) is refused as before.
    const fresh = await signed("POST", HOST_PATHS.start, {
      workflowId: newId("gone"),
      workflowName: "gone_since",
      input: {},
      acceptId: crypto.randomUUID(),
      retry: true,
    });
    expect(fresh.status).toBe(404);
    await client.workflow.getHandle(workflowId).result();
  });

  it("an attempt that reaches Temporal after the run of another attempt has ended answers with that run: one execution", async () => {
    // The edge's first attempt stalls past its timeout; the retry's describe finds nothing yet, so the
    // retry starts the run, which ends; then the stalled attempt (retry: false, no describe) arrives.
    const workflowId = newId("hello");
    const acceptId = crypto.randomUUID();
    const retried = startRunResponse.parse(await (await start(workflowId, acceptId, true)).json());
    await client.workflow.getHandle(workflowId).result();
    const stalled = await start(workflowId, acceptId, false);
    expect(stalled.status).toBe(200);
    expect(startRunResponse.parse(await stalled.json()).runId).toBe(retried.runId);
    expect(await executionsSeen(workflowId)).toEqual([retried.runId]);
  });

  it("an attempt with another accept id under the id of an ended run is 409 workflow_id_in_use, and starts nothing", async () => {
    const workflowId = newId("hello");
    const first = startRunResponse.parse(await (await start(workflowId, crypto.randomUUID(), false)).json());
    await client.workflow.getHandle(workflowId).result();
    const other = await start(workflowId, crypto.randomUUID(), false);
    expect(other.status).toBe(409);
    expect(await other.json()).toMatchObject({ error: { code: "workflow_id_in_use" } });
    expect(await executionsSeen(workflowId)).toEqual([first.runId]);
  });

  it("a first attempt that races an open run with another accept id is 409 workflow_id_in_use", async () => {
    const workflowId = newId("approval");
    const open = await signed("POST", HOST_PATHS.start, {
      workflowId,
      workflowName: "approval",
      input: { request: "x" },
      acceptId: crypto.randomUUID(),
    });
    expect(open.status).toBe(200);
    const other = await signed("POST", HOST_PATHS.start, {
      workflowId,
      workflowName: "approval",
      input: { request: "x" },
      acceptId: crypto.randomUUID(),
    });
    expect(other.status).toBe(409);
    expect(await other.json()).toMatchObject({ error: { code: "workflow_id_in_use" } });
    await client.workflow.getHandle(workflowId).terminate("test done");
  });
});

describe("requests Temporal would refuse, or the host could not read, are the caller's 400, not a 500", () => {
  it("a runId that is not a UUID in a cancel, terminate or reset is 400 invalid_request (Temporal's INVALID_ARGUMENT was a 500)", async () => {
    const workflowId = newId("approval");
    await signed("POST", HOST_PATHS.start, { workflowId, workflowName: "approval", input: { request: "x" } });
    try {
      for (const [path, body] of [
        [HOST_PATHS.cancel, { runId: "not-a-uuid" }],
        [HOST_PATHS.terminate, { runId: "not-a-uuid", reason: "x" }],
        [HOST_PATHS.reset, { runId: "not-a-uuid", stepName: "cleanupApproval" }],
      ] as const) {
        const res = await signed("POST", path(workflowId), body);
        expect([res.status, ((await res.json()) as { error: { code: string } }).error.code], path(workflowId)).toEqual([
          400,
          "invalid_request",
        ]);
      }
      // Nothing was done to the run.
      expect((await client.workflow.getHandle(workflowId).describe()).status.name).toBe("RUNNING");
    } finally {
      await client.workflow.getHandle(workflowId).terminate("test done");
    }
  });

  it("any other request Temporal refuses as malformed (gRPC INVALID_ARGUMENT) is 400 invalid_request with Temporal's words", async () => {
    // As @temporalio/client throws it: a ServiceError with the gRPC error as its cause.
    const refusal = new ServiceError("Failed to describe workflow", {
      cause: Object.assign(new Error("3 INVALID_ARGUMENT: Invalid RunId."), { code: 3, details: "Invalid RunId." }),
    });
    const refusing = {
      workflow: { getHandle: () => ({ describe: () => Promise.reject(refusal) }) },
      // The host gives a request's calls a deadline (withinDeadline, host/temporal.ts).
      withAbortSignal: (_signal: AbortSignal, calls: () => unknown) => calls(),
      withDeadline: (_deadline: number, calls: () => unknown) => calls(),
    } as unknown as Client;
    const api = createControlApi({
      client: refusing,
      taskQueue: TASK_QUEUE,
      sharedSecrets: [SECRET],
      relay: {} as HistoryRelay,
      edge: {} as EdgeClient,
      defaultExecutionTimeoutMs: executionTimeoutFrom(undefined),
    });
    const res = await signed("GET", HOST_PATHS.describe("any"), undefined, { to: api });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ error: { code: "invalid_request", message: "Temporal refused the request: Invalid RunId." } });
  });

  it("a cancel or terminate whose body is not JSON (cut short, say) is 400 invalid_request and stops nothing; an empty body still means the current run", async () => {
    const workflowId = newId("approval");
    const current = startRunResponse.parse(
      await (await signed("POST", HOST_PATHS.start, { workflowId, workflowName: "approval", input: { request: "x" } })).json(),
    );
    try {
      // Pinned to another run, cut short: it was read as `{}` (no pin), and stopped the current run.
      const cut = `{"runId":"${crypto.randomUUID()}"`;
      for (const path of [HOST_PATHS.cancel, HOST_PATHS.terminate]) {
        const res = await signedText("POST", path(workflowId), cut);
        const answer = (await res.json()) as { error: { code: string; message: string } };
        expect([res.status, answer.error.code], path(workflowId)).toEqual([400, "invalid_request"]);
        expect(answer.error.message).toMatch(/not valid JSON/);
      }
      expect((await client.workflow.getHandle(workflowId).describe()).status.name).toBe("RUNNING");
      const empty = await signedText("POST", HOST_PATHS.terminate(workflowId), "");
      expect([empty.status, ((await empty.json()) as { runId?: string }).runId]).toEqual([200, current.runId]);
    } finally {
      await client.workflow
        .getHandle(workflowId)
        .terminate("test done")
        .catch(() => undefined);
    }
  });

  it("a body that is not UTF-8 is 400 invalid_request, not started with its bytes replaced by U+FFFD", async () => {
    const workflowId = newId("hello");
    const text = new TextEncoder();
    const body = new Uint8Array([
      ...text.encode(`{"workflowId":"${workflowId}","workflowName":"hello","input":{"name":"`),
      0xff,
      ...text.encode(`"}}`),
    ]);
    const headers = await signRequest(SECRET, "POST", HOST_PATHS.start, body);
    const res = await app.request(HOST_PATHS.start, { method: "POST", headers: { ...headers, "content-type": "application/json" }, body });
    const answer = (await res.json()) as { error: { code: string; message: string } };
    expect([res.status, answer.error.code]).toEqual([400, "invalid_request"]);
    expect(answer.error.message).toMatch(/not valid UTF-8/);
    await expect(client.workflow.getHandle(workflowId).describe()).rejects.toThrow();
  });

  it("half a surrogate pair in a string the host hands Temporal (workflow id, terminate or reset reason, step name) is 400 invalid_request, not a 500", async () => {
    // Temporal's gRPC server refuses a string that is not UTF-8 with INTERNAL: the host's 500, the
    // edge's "bug on our side"; a start was even retried as if its outcome were unknown.
    const workflowId = newId("approval");
    await signed("POST", HOST_PATHS.start, { workflowId, workflowName: "approval", input: { request: "x" } });
    try {
      for (const [path, body] of [
        [HOST_PATHS.start, { workflowId: `${newId("hello")}\ud800`, workflowName: "hello", input: { name: "x" } }],
        [HOST_PATHS.terminate(workflowId), { reason: "half a pair \ud800" }],
        [HOST_PATHS.reset(workflowId), { stepName: "cleanupApproval", reason: "\udc00" }],
        [HOST_PATHS.reset(workflowId), { stepName: "cleanupApproval\ud800" }],
      ] as const) {
        // JSON.stringify writes half a pair as its escape (`\ud800`), as a caller's JSON would carry it.
        const res = await signed("POST", path, body);
        const answer = (await res.json()) as { error: { code: string; message: string } };
        expect([res.status, answer.error.code], JSON.stringify(body)).toEqual([400, "invalid_request"]);
        expect(answer.error.message).toMatch(/half a surrogate pair/);
      }
      expect((await client.workflow.getHandle(workflowId).describe()).status.name).toBe("RUNNING");
    } finally {
      await client.workflow.getHandle(workflowId).terminate("test done");
    }
  });

  it("a signed request to a route the host does not have is 404 route_not_found in the host's error body (the edge then knows the host did nothing)", async () => {
    for (const [method, path] of [
      ["POST", "/v1/nope"],
      ["DELETE", HOST_PATHS.describe(newId("hello"))],
      ["PUT", HOST_PATHS.start],
    ] as const) {
      const res = await signed(method, path, method === "PUT" ? {} : undefined);
      expect([res.status, await res.json()], `${method} ${path}`).toEqual([
        404,
        { error: { code: "route_not_found", message: `no route ${method} ${path}` } },
      ]);
    }
  });

  it("a body nested 100,000 deep is 400 invalid_request on signal, query and start, read no further (it was a 500: the stack overflowed)", async () => {
    const workflowId = newId("approval");
    await signed("POST", HOST_PATHS.start, { workflowId, workflowName: "approval", input: { request: "x" } });
    const deep = (key: string) => `{"${key}":${"[".repeat(100_000)}${"]".repeat(100_000)}}`;
    try {
      for (const [path, body] of [
        [HOST_PATHS.interact(workflowId, "signal", "approve"), deep("payload")],
        [HOST_PATHS.interact(workflowId, "query", "progress"), deep("payload")],
        [HOST_PATHS.start, deep("input").replace("{", `{"workflowId":"${newId("hello")}","workflowName":"hello",`)],
      ] as const) {
        const res = await signedText("POST", path, body);
        const answer = (await res.json()) as { error: { code: string; message: string } };
        expect([res.status, answer.error.code], path).toEqual([400, "invalid_request"]);
        expect(answer.error.message).toMatch(/nests arrays and objects more than \d+ levels deep/);
      }
      // The run took no signal: still waiting for its approval.
      expect(await (await signed("POST", HOST_PATHS.interact(workflowId, "query", "progress"), {})).json()).toMatchObject({
        result: { stage: "waiting_for_approval" },
      });
    } finally {
      await client.workflow.getHandle(workflowId).terminate("test done");
    }
  });
});

describe("a Temporal that is connected but slow: the host answers within its own deadlines, before the edge gives up", () => {
  /** Stands in for the host's deadlines (TEMPORAL_CALL_WAIT_MS, START_WAIT_MS, RESET_WAIT_MS), so the tests wait less. */
  const DEADLINE_MS = 500;
  /** Longer than DEADLINE_MS: what a call held by a slow Temporal takes. */
  const SLOW_MS = 5_000;
  const quick = () =>
    testControlApi(client, testWorker, SECRET, TASK_QUEUE, { callWaitMs: DEADLINE_MS, startWaitMs: DEADLINE_MS, resetWaitMs: DEADLINE_MS });
  type Service = Record<string, (...args: unknown[]) => Promise<unknown>>;
  /**
   * Temporal answers `method` only after SLOW_MS: having done what it was asked first (`applied`:
   * its answer is what is slow) or not (the request is what is slow). Returns the undo.
   */
  function slowTemporal(method: string, applied: boolean): () => void {
    const service = client.workflowService as unknown as Service;
    const original = service[method]!;
    const pause = () => new Promise((resolve) => setTimeout(resolve, SLOW_MS));
    service[method] = async (...args: unknown[]) => {
      if (!applied) return pause().then(() => original.apply(service, args));
      const answer = await original.apply(service, args);
      await pause();
      return answer;
    };
    return () => {
      service[method] = original;
    };
  }
  const answer = async (res: Response) => [res.status, ((await res.json()) as { error?: { code: string } }).error?.code];

  it("a describe, follow, result, or the look-up before a query or signal that Temporal does not answer in time is 503 temporal_timed_out (nothing was changed: safe to repeat), not a request held until the edge gives up", async () => {
    const workflowId = newId("approval");
    const started = await client.workflow.start("approval", { taskQueue: TASK_QUEUE, workflowId, args: [{ request: "slow reads" }] });
    const api = quick();
    const restore = slowTemporal("describeWorkflowExecution", false);
    try {
      for (const [method, path, body] of [
        ["GET", HOST_PATHS.describe(workflowId), undefined],
        ["POST", HOST_PATHS.follow(workflowId), {}],
        ["GET", `${HOST_PATHS.result(workflowId)}?waitMs=0`, undefined],
        // After its wait: the describe that follows it.
        ["GET", `${HOST_PATHS.result(workflowId)}?waitMs=300`, undefined],
        ["GET", `${HOST_PATHS.result(workflowId)}?waitMs=300&runId=${started.firstExecutionRunId}`, undefined],
        ["POST", HOST_PATHS.interact(workflowId, "query", "progress"), {}],
        ["POST", HOST_PATHS.interact(workflowId, "signal", "approve"), { payload: { approvedBy: "ada" } }],
      ] as const) {
        const began = Date.now();
        const res = await signed(method, path, body, { to: api });
        expect([path, ...(await answer(res))]).toEqual([path, 503, "temporal_timed_out"]);
        expect(Date.now() - began, path).toBeLessThan(SLOW_MS - 1_000);
      }
    } finally {
      restore();
    }
    try {
      // The signal was never sent: the run still waits for its approval.
      expect(await (await signed("POST", HOST_PATHS.interact(workflowId, "query", "progress"), {})).json()).toMatchObject({
        result: { stage: "waiting_for_approval" },
      });
    } finally {
      await started.terminate("test over");
    }
  }, 60_000);

  it("a cancel or terminate whose answer Temporal holds is 503 temporal_timed_out in time: repeating it is harmless (cancelling twice changes nothing; a terminated run is then 409 run_finished)", async () => {
    for (const [path, method] of [
      [HOST_PATHS.cancel, "requestCancelWorkflowExecution"],
      [HOST_PATHS.terminate, "terminateWorkflowExecution"],
    ] as const) {
      const workflowId = newId("approval");
      await client.workflow.start("approval", { taskQueue: TASK_QUEUE, workflowId, args: [{ request: "slow stop" }] });
      const restore = slowTemporal(method, true);
      try {
        const began = Date.now();
        expect([method, ...(await answer(await signed("POST", path(workflowId), {}, { to: quick() })))]).toEqual([
          method,
          503,
          "temporal_timed_out",
        ]);
        expect(Date.now() - began, method).toBeLessThan(SLOW_MS - 1_000);
      } finally {
        restore();
      }
      // Temporal did it; the repeat a 503 invites finds the run ended (or cancelling, for a cancel: the same request again).
      const ended = await client.workflow
        .getHandle(workflowId)
        .result()
        .then(
          () => "completed",
          (err: Error) => err.cause?.constructor.name,
        );
      expect(ended, method).toBe(method === "terminateWorkflowExecution" ? "TerminatedFailure" : "CancelledFailure");
      expect(await answer(await signed("POST", path(workflowId), {}))).toEqual([409, "run_finished"]);
    }
  }, 60_000);

  it("a start whose answer Temporal holds is 504 start_outcome_unknown before the edge's 5 s: it may have started the run, and the outbox's retry (same accept id) answers with it, one execution", async () => {
    const workflowId = newId("hello");
    const acceptId = crypto.randomUUID();
    const body = { workflowId, workflowName: "hello", input: { name: "slow" }, acceptId };
    const restore = slowTemporal("startWorkflowExecution", true);
    try {
      const began = Date.now();
      expect(await answer(await signed("POST", HOST_PATHS.start, body, { to: quick() }))).toEqual([504, "start_outcome_unknown"]);
      expect(Date.now() - began).toBeLessThan(SLOW_MS - 1_000);
    } finally {
      restore();
    }
    const retried = await signed("POST", HOST_PATHS.start, { ...body, retry: true });
    expect(retried.status).toBe(200);
    const { runId } = startRunResponse.parse(await retried.json());
    expect((await client.workflow.getHandle(workflowId).describe()).runId).toBe(runId);
  });

  it("a reset whose answer Temporal holds is 504 reset_outcome_unknown before the edge's 20 s, never a 503 to retry: it may have reset the run (here it did)", async () => {
    const workflowId = newId("two_steps");
    const started = await client.workflow.start("two_steps", { taskQueue: TASK_QUEUE, workflowId, args: [{ text: "slow reset" }] });
    await started.result();
    const restore = slowTemporal("resetWorkflowExecution", true);
    try {
      const began = Date.now();
      const res = await signed(
        "POST",
        HOST_PATHS.reset(workflowId),
        { stepName: "countWords", runId: started.firstExecutionRunId },
        { to: quick() },
      );
      expect(await answer(res)).toEqual([504, "reset_outcome_unknown"]);
      expect(Date.now() - began).toBeLessThan(SLOW_MS - 1_000);
    } finally {
      restore();
    }
    expect((await client.workflow.getHandle(workflowId).describe()).runId).not.toBe(started.firstExecutionRunId);
  });

  it("a signal whose answer Temporal holds is 504 signal_outcome_unknown in time, not a 503 to retry: it was applied", async () => {
    const workflowId = newId("approval");
    const started = await client.workflow.start("approval", { taskQueue: TASK_QUEUE, workflowId, args: [{ request: "slow signal" }] });
    const restore = slowTemporal("signalWorkflowExecution", true);
    try {
      const began = Date.now();
      const res = await signed(
        "POST",
        HOST_PATHS.interact(workflowId, "signal", "approve"),
        { payload: { approvedBy: "ada" } },
        { to: quick() },
      );
      expect(await answer(res)).toEqual([504, "signal_outcome_unknown"]);
      expect(Date.now() - began).toBeLessThan(SLOW_MS - 1_000);
    } finally {
      restore();
    }
    expect(await started.result()).toMatchObject({ approvedBy: "ada" });
  });

  it("each of the host's deadlines is under the edge's wait for the same call, so the edge gets the host's own answer", () => {
    /** A number the edge's source sets (`NAME = 15_000`, or `key: 30_000` in an object): its modules are not the host's to import (Env, D1 types). */
    const edge = (file: string, name: string) => {
      const found = new RegExp(`\\b${name}(?: =|:) ([\\d_]+)\\b`).exec(readFileSync(file, "utf8"));
      expect(found, `${name} in ${file}`).not.toBeNull();
      return Number(found![1]!.replaceAll("_", ""));
    };
    expect(TEMPORAL_CALL_WAIT_MS).toBeLessThan(edge("src/host-client.ts", "HOST_CALL_WAIT_MS"));
    expect(START_WAIT_MS).toBeLessThan(edge("durable-objects/run-stream/constants.ts", "START_ATTEMPT_TIMEOUT_MS"));
    expect(RESET_WAIT_MS).toBeLessThan(edge("durable-objects/run-stream/reset-mark.ts", "RESET_HOST_TIMEOUT_MS"));
    // INTERACT_WAIT_MS: the look-up of the run, then the message (a query's look-up is within its wait).
    expect(TEMPORAL_CALL_WAIT_MS * 2).toBeLessThan(edge("src/host-client.ts", "signal"));
    expect(QUERY_WAIT_MS).toBeLessThan(edge("src/host-client.ts", "query"));
    expect(TEMPORAL_CALL_WAIT_MS + UPDATE_WAIT_MS).toBeLessThan(edge("src/host-client.ts", "update"));
  });

  it("a result's waitMs that is not a whole number of milliseconds (abc, -5, 1.5, empty) is 400 invalid_request, not read as 0", async () => {
    const workflowId = newId("hello");
    await client.workflow.start("hello", { taskQueue: TASK_QUEUE, workflowId, args: [{ name: "x" }] });
    for (const waitMs of ["abc", "-5", "1.5", ""]) {
      const res = await signed("GET", `${HOST_PATHS.result(workflowId)}?waitMs=${waitMs}`);
      expect([waitMs, ...(await answer(res))]).toEqual([waitMs, 400, "invalid_request"]);
    }
    expect((await signed("GET", `${HOST_PATHS.result(workflowId)}?waitMs=0`)).status).toBe(200);
  });
});
