/**
 * The control API when Temporal itself refuses or is gone, on a Temporal dev server of this file's
 * own: its per-run limits set low (Temporal's defaults are 10,000 signals and 2,000 updates per
 * run), and stopped at the end to see the host answer an outage.
 *
 * @temporalio/client throws these as a ServiceError whose gRPC status is on its cause; before the
 * host read it there, every one of them was a 500 `host_error` (the edge's 500 `internal_error`).
 */
import { Client, Connection, defaultGrpcRetryOptions, makeGrpcRetryInterceptor } from "@temporalio/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { createControlApi } from "../../host/control-api.ts";
import { HOST_PATHS } from "../../src/shared/host-api.ts";
import { signRequest } from "../../src/shared/signing.ts";
import { type RunningTemporal, startTemporal } from "../support/temporal-server.ts";
import { startTestWorker, type TestWorker, testControlApi } from "./temporal-worker.ts";

const SECRET = "host-test-secret-long-enough-for-hmac-sha256"; // test-only
const TASK_QUEUE = `host-limits-${process.pid}`;
const MAX_SIGNALS = 3;
const MAX_UPDATES = 2;

let temporal: RunningTemporal;
let testWorker: TestWorker;
let app: ReturnType<typeof createControlApi>;

async function signed(method: string, path: string, payload?: unknown) {
  const body = payload === undefined ? "" : JSON.stringify(payload);
  const headers = await signRequest(SECRET, method, path, body);
  return app.request(path, { method, headers: { ...headers, "content-type": "application/json" }, body: body || undefined });
}
const interact = (workflowId: string, kind: "signal" | "update", name: string, payload?: unknown) =>
  signed("POST", HOST_PATHS.interact(workflowId, kind, name), { payload });
const startApproval = async () => {
  const workflowId = `approval-${crypto.randomUUID()}`;
  expect((await signed("POST", HOST_PATHS.start, { workflowId, workflowName: "approval", input: { request: "limits" } })).status).toBe(200);
  return workflowId;
};

beforeAll(async () => {
  temporal = await startTemporal({
    args: [
      "--dynamic-config-value",
      `history.maximumSignalsPerExecution=${MAX_SIGNALS}`,
      "--dynamic-config-value",
      `history.maxTotalUpdates=${MAX_UPDATES}`,
    ],
  });
  testWorker = await startTestWorker(SECRET, TASK_QUEUE, temporal.address);
  // The host's client retries UNAVAILABLE for about 20 s before it gives up; two tries are enough here.
  const client = new Client({
    connection: await Connection.connect({
      address: temporal.address,
      interceptors: [makeGrpcRetryInterceptor(defaultGrpcRetryOptions({ maxAttempts: 2 }))],
    }),
  });
  app = testControlApi(client, testWorker, SECRET, TASK_QUEUE);
}, 900_000);

afterAll(async () => {
  await testWorker?.stop().catch(() => undefined); // stopped already by the outage test
  await temporal?.stop();
});

describe("control API: Temporal refuses a message for the run", () => {
  it("a signal past the run's signal limit is 409 message_rejected with Temporal's words, not a 500", async () => {
    const workflowId = await startApproval();
    // An empty approve is taken and ignored by the workflow: the run stays open.
    for (let i = 0; i < MAX_SIGNALS; i++) expect((await interact(workflowId, "signal", "approve", {})).status, `signal ${i + 1}`).toBe(200);
    const refused = await interact(workflowId, "signal", "approve", {});
    expect(refused.status).toBe(409);
    const body = (await refused.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe("message_rejected");
    expect(body.error.message).toMatch(/^Temporal refused the signal for this run: .*limit/);
  });

  it("an update past the run's update limit is 409 message_rejected; the run still answers queries", async () => {
    const workflowId = await startApproval();
    for (let priority = 1; priority <= MAX_UPDATES; priority++) {
      expect((await interact(workflowId, "update", "setPriority", { priority })).status, `update ${priority}`).toBe(200);
    }
    const refused = await interact(workflowId, "update", "setPriority", { priority: 4 });
    expect(refused.status).toBe(409);
    expect(await refused.json()).toMatchObject({ error: { code: "message_rejected" } });
    const progress = await signed("POST", HOST_PATHS.interact(workflowId, "query", "progress"), {});
    expect(await progress.json()).toMatchObject({ result: { priority: MAX_UPDATES } });
  });
});

describe("control API: Temporal is gone", () => {
  it("reads and messages answer 503 temporal_unavailable (the edge's 503 with Retry-After), not a 500", async () => {
    const workflowId = await startApproval();
    await testWorker.stop();
    await temporal.stop();
    for (const [method, path, payload] of [
      ["GET", HOST_PATHS.describe(workflowId), undefined],
      ["GET", HOST_PATHS.result(workflowId), undefined],
      ["POST", HOST_PATHS.interact(workflowId, "signal", "approve"), { payload: {} }],
      ["POST", HOST_PATHS.start, { workflowId: `hello-${crypto.randomUUID()}`, workflowName: "hello", input: { name: "Ada" } }],
    ] as const) {
      const res = await signed(method, path, payload);
      expect([res.status, ((await res.json()) as { error: { code: string } }).error.code], path).toEqual([503, "temporal_unavailable"]);
    }
  });
});
