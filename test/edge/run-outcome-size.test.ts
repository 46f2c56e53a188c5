/**
 * A run's outcome larger than its D1 row can hold (D1: at most 2,000,000 bytes a row, the input
 * included): the finish still lands, so the run reaches its final status, and every read answers
 * the whole output, from the run's log. A very long error is cut in the row, saying so.
 * Local D1 does not enforce the row limit, so these tests check what the row holds.
 */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { SignJWT } from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import { MAX_LOGGED_STEP_OUTPUTS_PER_READ } from "../../durable-objects/run-stream/constants.ts";
import { MAX_LOG_ROW_DATA_BYTES } from "../../durable-objects/run-stream/event-parts.ts";
import { MAX_ROW_ERROR_CHARS, MAX_ROW_ERROR_DETAILS_BYTES, MAX_ROW_OUTPUT_BYTES } from "../../durable-objects/run-stream/row-limits.ts";
import { runStream } from "../../src/run-stream-client.ts";
import { call, seedCatalog, seedOrganization, signedPost } from "./helpers.ts";
import { closeEvent, createRunningRun, finishedEvent, historyEvent, push } from "./stream-helpers.ts";

const JWT_SECRET = "edge-test-jwt-secret-at-least-32-bytes-long"; // the edge tests' (vitest.config.ts)

let org: Awaited<ReturnType<typeof seedOrganization>>;
beforeAll(async () => {
  await seedCatalog();
  org = await seedOrganization();
});

const get = (path: string, token: string) => call(path, { headers: { authorization: `Bearer ${token}` } });
const jwt = (organizationId: string) =>
  new SignJWT({ org_id: organizationId })
    .setProtectedHeader({ alg: "HS256" })
    .setSubject("user-1")
    .setIssuedAt()
    .setExpirationTime("5m")
    .sign(new TextEncoder().encode(JWT_SECRET));

const row = (workflowId: string) =>
  env.DB.prepare("SELECT id, status, output, output_in_log, error FROM runs WHERE temporal_workflow_id = ?")
    .bind(workflowId)
    .first<{ id: string; status: string; output: string | null; output_in_log: number; error: string | null }>();

async function finish(output: unknown, status = "completed", error: string | null = null, errorDetails?: unknown) {
  const { workflowId, runId } = await createRunningRun(org.organizationId, "hello");
  await push(workflowId, [
    historyEvent(runId, 1),
    closeEvent(runId, 2),
    {
      sourceKey: `run:${runId}:finished`,
      type: "run.finished",
      at: new Date().toISOString(),
      data: { runId, status, output, error, ...(errorDetails ? { errorDetails } : {}) },
    },
  ]);
  return { workflowId, runId };
}

describe("a run's outcome larger than its D1 row can hold", () => {
  it("an output over MAX_ROW_OUTPUT_BYTES stays in the log only; the run completes and every read answers it whole", async () => {
    const output = { text: "x".repeat(MAX_ROW_OUTPUT_BYTES + 10_000) };
    const { workflowId } = await finish(output);
    const stored = (await row(workflowId))!;
    expect([stored.status, stored.output, stored.output_in_log]).toEqual(["completed", null, 1]);

    const result = await get(`/workflow/${workflowId}/result`, org.key);
    expect(result.status).toBe(200);
    expect(((await result.json()) as { output: unknown }).output).toEqual(output);
    const detail = await get(`/api/v1/workflow-runs/${stored.id}`, await jwt(org.organizationId));
    expect(detail.status).toBe(200);
    expect(((await detail.json()) as { outputs: unknown }).outputs).toEqual(output);
    const listed = (await (await get("/api/v1/workflow-runs?limit=100", await jwt(org.organizationId))).json()) as {
      runs?: Array<{ id: string; status: string }>;
    };
    expect(JSON.stringify(listed)).toContain(stored.id);
  });

  it("the limit counts UTF-8 bytes: 300,000 'é' (600 kB) go in the row, 500,000 (1 MB) do not", async () => {
    const fits = { text: "é".repeat(300_000) };
    const fitting = (await row((await finish(fits)).workflowId))!;
    expect([fitting.output_in_log, JSON.parse(fitting.output!)]).toEqual([0, fits]);
    const big = { text: "é".repeat(500_000) };
    const { workflowId } = await finish(big);
    expect((await row(workflowId))!.output_in_log).toBe(1);
    expect(((await (await get(`/workflow/${workflowId}/result`, org.key)).json()) as { output: unknown }).output).toEqual(big);
  });

  it("errorDetails over MAX_ROW_ERROR_DETAILS_BYTES have their messages cut in the row; the result answers them cut, the log keeps them whole", async () => {
    const long = "d".repeat(100_000);
    const details = {
      message: long,
      name: "Error",
      retryable: false,
      activityId: null,
      cause: { name: "WorkflowFailedError", message: long },
    };
    const { workflowId } = await finish(null, "failed", "boom", details);
    const stored = await env.DB.prepare("SELECT status, error_details FROM runs WHERE temporal_workflow_id = ?")
      .bind(workflowId)
      .first<{ status: string; error_details: string }>();
    expect(stored!.status).toBe("failed");
    expect(stored!.error_details.length).toBeLessThanOrEqual(MAX_ROW_ERROR_DETAILS_BYTES);
    const answered = ((await (await get(`/workflow/${workflowId}/result`, org.key)).json()) as { errorDetails: typeof details })
      .errorDetails;
    expect(answered).toMatchObject({ name: "Error", retryable: false, cause: { name: "WorkflowFailedError" } });
    expect(answered.message).toMatch(/^d{1024}… \(98976 more characters\)$/);
  });

  it("errorDetails that stay over the limit once cut (text JSON escapes six-fold) keep their message cut, without the cause chain", async () => {
    const control = "\u0001".repeat(5_000);
    let cause: Record<string, unknown> = { name: "Error", message: control };
    for (let i = 0; i < 10; i++) cause = { name: "Error", message: control, cause };
    const details = { message: control, name: "Error", retryable: false, activityId: null, cause };
    const { workflowId } = await finish(null, "failed", "boom", details);
    const stored = await env.DB.prepare("SELECT error_details FROM runs WHERE temporal_workflow_id = ?")
      .bind(workflowId)
      .first<{ error_details: string }>();
    expect(new TextEncoder().encode(stored!.error_details).byteLength).toBeLessThanOrEqual(MAX_ROW_ERROR_DETAILS_BYTES);
    expect(JSON.parse(stored!.error_details)).toMatchObject({ name: "Error", retryable: false, cause: null });
  });

  it("a step's error longer than MAX_ROW_ERROR_CHARS is cut in its step row too; the run still finishes", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId, "hello");
    const error = `step boom: ${"s".repeat(50_000)}`;
    await push(workflowId, [
      {
        sourceKey: `step:${runId}:1:1:started`,
        type: "step",
        at: new Date().toISOString(),
        data: { runId, activityId: "1", stepName: "greet", attempt: 1, state: "started" },
      },
      {
        sourceKey: `step:${runId}:1:1:failed`,
        type: "step",
        at: new Date().toISOString(),
        data: { runId, activityId: "1", stepName: "greet", attempt: 1, state: "failed", error },
      },
      historyEvent(runId, 1),
      closeEvent(runId, 2),
      {
        sourceKey: `run:${runId}:finished`,
        type: "run.finished",
        at: new Date().toISOString(),
        data: { runId, status: "failed", error: "the step failed" },
      },
    ]);
    expect((await row(workflowId))!.status).toBe("failed");
    const step = await env.DB.prepare("SELECT s.error FROM step_runs s JOIN runs r ON r.id = s.run_id WHERE r.temporal_workflow_id = ?")
      .bind(workflowId)
      .first<{ error: string }>();
    expect(step!.error.length).toBeLessThan(MAX_ROW_ERROR_CHARS + 100);
    expect(step!.error.endsWith(`… (${error.length - MAX_ROW_ERROR_CHARS} more characters)`)).toBe(true);
  });

  it("a step attempt's outputs over MAX_ROW_OUTPUT_BYTES stay in the log only; the run completes and its detail answers them whole", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId, "hello");
    const outputs = { page: "p".repeat(MAX_ROW_OUTPUT_BYTES + 10_000) };
    const small = { words: 3 };
    const step = (activityId: string, state: string, extra: Record<string, unknown> = {}) => ({
      sourceKey: `step:${runId}:${activityId}:1:${state}`,
      type: "step",
      at: new Date().toISOString(),
      data: { runId, activityId, stepName: `step${activityId}`, attempt: 1, state, ...extra },
    });
    await push(workflowId, [
      step("1", "started"),
      step("1", "completed", { outputs }),
      step("2", "started"),
      step("2", "completed", { outputs: small }),
      historyEvent(runId, 1),
      closeEvent(runId, 2),
      {
        sourceKey: `run:${runId}:finished`,
        type: "run.finished",
        at: new Date().toISOString(),
        data: { runId, status: "completed", output: small },
      },
    ]);
    const stored = (await row(workflowId))!;
    expect(stored.status).toBe("completed");
    const steps = await env.DB.prepare("SELECT step_id, outputs, outputs_in_log FROM step_runs WHERE run_id = ? ORDER BY step_id")
      .bind(stored.id)
      .all<{ step_id: string; outputs: string | null; outputs_in_log: number }>();
    expect(steps.results).toEqual([
      { step_id: "1", outputs: null, outputs_in_log: 1 },
      { step_id: "2", outputs: JSON.stringify(small), outputs_in_log: 0 },
    ]);
    const detail = await get(`/api/v1/workflow-runs/${stored.id}`, await jwt(org.organizationId));
    expect(detail.status).toBe(200);
    const activityRuns = ((await detail.json()) as { activityRuns: Array<{ stepId: string; outputs: unknown }> }).activityRuns;
    expect(activityRuns.map((a) => [a.stepId, a.outputs])).toEqual([
      ["1", outputs],
      ["2", small],
    ]);
  });

  it("past MAX_LOGGED_STEP_OUTPUTS_PER_READ such attempts, a detail answers the rest outputsOmitted (one read stays within the DO's memory)", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId, "hello");
    const count = MAX_LOGGED_STEP_OUTPUTS_PER_READ + 1;
    const big = (n: number) => ({ n, page: "q".repeat(MAX_ROW_OUTPUT_BYTES + 1_000) });
    for (let n = 1; n <= count; n++) {
      await push(workflowId, [
        {
          sourceKey: `step:${runId}:${n}:1:completed`,
          type: "step",
          at: new Date().toISOString(),
          data: { runId, activityId: String(n), stepName: `step${n}`, attempt: 1, state: "completed", outputs: big(n) },
        },
      ]);
    }
    await push(workflowId, [historyEvent(runId, 1), closeEvent(runId, 2), finishedEvent(runId)]);
    const stored = (await row(workflowId))!;
    const detail = (await (await get(`/api/v1/workflow-runs/${stored.id}`, await jwt(org.organizationId))).json()) as {
      activityRuns: Array<{ stepId: string; outputs: { n: number } | null; outputsOmitted?: boolean }>;
    };
    const byStep = detail.activityRuns.sort((a, b) => Number(a.stepId) - Number(b.stepId));
    expect(byStep.slice(0, -1).map((a) => [a.outputs?.n, a.outputsOmitted])).toEqual(
      Array.from({ length: count - 1 }, (_, i) => [i + 1, undefined]),
    );
    expect(byStep.at(-1)).toMatchObject({ outputs: null, outputsOmitted: true });
  });

  it("a step attempt's outputs of 100,000 characters (past the host's former 16,000 cap) are kept in the row and come back whole from the detail", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId, "hello");
    const outputs = { page: "r".repeat(100_000 - 11) };
    expect(JSON.stringify(outputs).length).toBe(100_000);
    await push(workflowId, [
      {
        sourceKey: `step:${runId}:1:1:completed`,
        type: "step",
        at: new Date().toISOString(),
        data: { runId, activityId: "1", stepName: "step1", attempt: 1, state: "completed", outputs },
      },
      historyEvent(runId, 1),
      closeEvent(runId, 2),
      finishedEvent(runId),
    ]);
    const stored = (await row(workflowId))!;
    const detail = (await (await get(`/api/v1/workflow-runs/${stored.id}`, await jwt(org.organizationId))).json()) as {
      activityRuns: Array<{ stepId: string; outputs: unknown; outputsOmitted?: boolean }>;
    };
    expect(detail.activityRuns).toHaveLength(1);
    expect(detail.activityRuns[0]!.outputsOmitted).toBeUndefined();
    expect(JSON.stringify(detail.activityRuns[0]!.outputs) === JSON.stringify(outputs)).toBe(true);
  });

  it("a step event whose outputs the host left out (outputsOmitted: past its MAX_STEP_OUTPUT_BYTES) answers outputs: null, outputsOmitted: true, whatever order its events arrive in", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId, "hello");
    const step = (activityId: string, state: string, extra: Record<string, unknown> = {}) => ({
      sourceKey: `step:${runId}:${activityId}:1:${state}`,
      type: "step",
      at: new Date().toISOString(),
      data: { runId, activityId, stepName: `step${activityId}`, attempt: 1, state, ...extra },
    });
    const omitted = { outputsOmitted: true, outputsSize: 3 * 1024 * 1024 };
    // "1": both ends in one push (one upsert); "2": its start after its end, in a later push; "3" has outputs.
    await push(workflowId, [step("1", "started"), step("1", "completed", omitted), step("2", "completed", omitted)]);
    await push(workflowId, [step("2", "started"), step("3", "completed", { outputs: { words: 3 } })]);
    await push(workflowId, [historyEvent(runId, 1), closeEvent(runId, 2), finishedEvent(runId)]);
    const stored = (await row(workflowId))!;
    expect(stored.status).toBe("completed");
    const detail = (await (await get(`/api/v1/workflow-runs/${stored.id}`, await jwt(org.organizationId))).json()) as {
      activityRuns: Array<{ stepId: string; status: string; outputs: unknown; outputsOmitted?: boolean }>;
    };
    const byStep = detail.activityRuns.sort((a, b) => Number(a.stepId) - Number(b.stepId));
    expect(byStep.map((a) => [a.stepId, a.status, a.outputs, a.outputsOmitted])).toEqual([
      ["1", "completed", null, true],
      ["2", "completed", null, true],
      ["3", "completed", { words: 3 }, undefined],
    ]);
    // No stand-in object anywhere: the log keeps the flag and the size, not outputs.
    const logged = (await runStream(env, workflowId).events()).filter((e) => e.type === "step" && e.data.state === "completed");
    expect(logged.map((e) => (e.data as Record<string, unknown>).outputsOmitted)).toEqual([true, true, undefined]);
    expect(logged.map((e) => (e.data as Record<string, unknown>).outputsSize)).toEqual([3 * 1024 * 1024, 3 * 1024 * 1024, undefined]);
  });

  it("a step event that says outputsOmitted while carrying outputs, or a bad outputsSize, is refused (400): nothing half-recorded", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId, "hello");
    const completed = (extra: Record<string, unknown>) => ({
      sourceKey: `step:${runId}:1:1:completed`,
      type: "step",
      at: new Date().toISOString(),
      data: { runId, activityId: "1", stepName: "step1", attempt: 1, state: "completed", ...extra },
    });
    for (const extra of [
      { outputsOmitted: true, outputs: { truncated: true } },
      { outputsOmitted: false },
      { outputsOmitted: true, outputsSize: -1 },
    ]) {
      const res = await signedPost(`/internal/runs/${workflowId}/events`, { events: [completed(extra)] });
      expect(res.status, JSON.stringify(extra)).toBe(400);
    }
    expect((await runStream(env, workflowId).events()).filter((e) => e.type === "step")).toEqual([]);
  });

  it("an error longer than MAX_ROW_ERROR_CHARS is cut in the row, saying how much was left out; the run still fails", async () => {
    const error = `boom: ${"e".repeat(100_000)}`;
    const { workflowId } = await finish(null, "failed", error);
    const stored = (await row(workflowId))!;
    expect(stored.status).toBe("failed");
    expect(stored.error!.startsWith(error.slice(0, MAX_ROW_ERROR_CHARS))).toBe(true);
    expect(stored.error!.endsWith(`… (${error.length - MAX_ROW_ERROR_CHARS} more characters)`)).toBe(true);
    const result = (await (await get(`/workflow/${workflowId}/result`, org.key)).json()) as { status: string; error: string };
    expect(result.status).toBe("failed");
    expect(result.error).toBe(stored.error);
  });
});

describe("a log entry larger than a Durable Object row (2 MB) is kept in pieces", () => {
  /** What the run's DO holds, row by row (workerd's local SQLite does not enforce the row limit, so this is what the test checks). */
  const storedSizes = (workflowId: string) =>
    runInDurableObject(runStream(env, workflowId), (_i, state) => ({
      rows: state.storage.sql
        .exec<{ type: string; bytes: number; parts: number }>(
          "SELECT type, length(CAST(data AS BLOB)) AS bytes, parts FROM events ORDER BY seq",
        )
        .toArray(),
      pieces: state.storage.sql.exec<{ bytes: number }>("SELECT length(CAST(text AS BLOB)) AS bytes FROM event_parts").toArray(),
    }));

  it("a 2.4 MB history payload and output: no row or piece over MAX_LOG_ROW_DATA_BYTES, every read answers them whole, the run completes", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId, "hello");
    // Emoji (surrogate pairs, 4 UTF-8 bytes) and quotes (escaped in JSON) across the pieces' boundaries.
    const output = { text: `${'😀"'.repeat(300_000)}end` };
    const big = historyEvent(runId, 2);
    (big.data.event as { payloads: unknown }).payloads = { result: output };
    await push(workflowId, [
      historyEvent(runId, 1),
      big,
      closeEvent(runId, 3),
      {
        sourceKey: `run:${runId}:finished`,
        type: "run.finished",
        at: new Date().toISOString(),
        data: { runId, status: "completed", output, error: null },
      },
    ]);
    const { rows, pieces } = await storedSizes(workflowId);
    expect(Math.max(...rows.map((r) => r.bytes))).toBeLessThanOrEqual(MAX_LOG_ROW_DATA_BYTES);
    expect(Math.max(...pieces.map((p) => p.bytes))).toBeLessThanOrEqual(MAX_LOG_ROW_DATA_BYTES);
    expect(rows.filter((r) => r.parts > 0).map((r) => r.type)).toEqual(["history", "run.finished"]);

    expect((await row(workflowId))!.status).toBe("completed");
    const result = await get(`/workflow/${workflowId}/result`, org.key);
    expect(((await result.json()) as { output: unknown }).output).toEqual(output);
    const page = await runStream(env, workflowId).historyPage(runId, 0, 10, true);
    const completed = (page.events as Array<Record<string, unknown>>).find((e) => e.eventId === "2")!;
    expect(completed.activityTaskCompletedEventAttributes).toMatchObject({ result: [output] });
    // The stream replays it whole too.
    const stream = await get(`/workflow/${workflowId}/history/stream?includePayloads=true`, org.key);
    const text = await stream.text();
    const json = JSON.stringify(output);
    expect(text).toContain(json.slice(0, 1000));
    expect(text).toContain(json.slice(-1000));
  });

  it("an entry that fits stays in its row (no pieces)", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId, "hello");
    await push(workflowId, [historyEvent(runId, 1), closeEvent(runId, 2), finishedEvent(runId)]);
    const { rows, pieces } = await storedSizes(workflowId);
    expect(rows.every((r) => r.parts === 0)).toBe(true);
    expect(pieces).toEqual([]);
  });
});
