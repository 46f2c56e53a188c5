/**
 * Temporal itself restarts mid-run (the dev server with a database file, so its state survives).
 * The host's relay and worker reconnect by themselves; nothing is lost or repeated.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { Client, Connection } from "@temporalio/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { collectHistoryStream } from "../support/sse.ts";
import { KEEP_STATE_ENV, startStack, type RunningStack } from "../support/stack.ts";
import { startTemporal, type RunningTemporal } from "../support/temporal-server.ts";

const dbFile = join(mkdtempSync(join(tmpdir(), "outrider-temporal-")), "temporal.db");

let temporal: RunningTemporal;
let stack: RunningStack;

beforeAll(async () => {
  // Started first, so `npm run dev` reuses it instead of starting an in-memory one.
  temporal = await startTemporal({ env: { TEMPORAL_DB_FILENAME: dbFile } });
  stack = await startStack({ ports: { temporal: temporal.ports.grpc }, reuseTemporal: true });
});

afterAll(async () => {
  await stack?.stop();
  await temporal?.stop();
  rmSync(dirname(dbFile), { recursive: true, force: true });
});

describe("Temporal restarts mid-run", () => {
  it("the run completes, the subscriber gets every event exactly once, and the row ends completed", async () => {
    const api = (path: string, init: RequestInit = {}) =>
      fetch(`${stack.baseUrl}${path}`, {
        ...init,
        headers: { authorization: `Bearer ${stack.apiKey}`, "content-type": "application/json" },
      });
    const start = await api("/workflow/start", {
      method: "POST",
      body: JSON.stringify({ workflowName: "two_steps", input: { text: "outlive the server", pauseMs: 4000 } }),
    });
    const { workflowId } = (await start.json()) as { workflowId: string };
    const collected = collectHistoryStream((await api(`/workflow/${workflowId}/history/stream`)).body!);

    await new Promise((r) => setTimeout(r, 1000)); // inside the durable pause
    // Still going as Temporal stops (a slow start could have let it finish first, testing nothing).
    expect(((await (await api(`/workflow/${workflowId}/status`)).json()) as { status: string }).status).toBe("running");
    await temporal.stop();
    // Back on the same ports (gRPC, HTTP, metrics), as a restarted server would be.
    temporal = await startTemporal({ ports: temporal.ports, env: { TEMPORAL_DB_FILENAME: dbFile } });

    const seen = await collected;
    const client = new Client({ connection: await Connection.connect({ address: stack.temporalAddress }) });
    try {
      const history = await client.workflow.getHandle(workflowId).fetchHistory();
      expect(seen.eventIds).toEqual(history.events!.map((e) => Number(e.eventId)));
    } finally {
      await client.connection.close();
    }
    expect(seen.done).toEqual([{ reason: "WORKFLOW_EXECUTION_COMPLETED" }]);
    const status = (await (await api(`/workflow/${workflowId}/status`)).json()) as { status: string };
    expect(status.status).toBe("completed");
  });

  it("GET /ready is 503 with Retry-After while Temporal is down, and 200 again once it is back", async () => {
    const ready = () => fetch(`${stack.baseUrl}/ready`);
    const until = async (wanted: number) => {
      const deadline = Date.now() + 30_000;
      for (;;) {
        const res = await ready();
        if (res.status === wanted) return res;
        if (Date.now() > deadline) throw new Error(`/ready did not answer ${wanted} within 30 s (last ${res.status})`);
        await new Promise((r) => setTimeout(r, 500));
      }
    };
    await until(200);
    await temporal.stop();
    try {
      const down = await until(503);
      expect(Number(down.headers.get("retry-after"))).toBeGreaterThan(0);
      expect(((await down.json()) as { error: string; code: string }).code).toBe("host_unavailable");
    } finally {
      temporal = await startTemporal({ ports: temporal.ports, env: { TEMPORAL_DB_FILENAME: dbFile } });
    }
    await until(200);
  });

  // Last: it stops the stack. A full `npm test` starts about 40 stacks; each one's local D1 and
  // DO storage (up to 0.5 GB) stayed in the temp directory after it stopped.
  it("stopping the stack deletes its state directory (local D1, DO storage, stack.log)", async () => {
    expect(existsSync(join(stack.stateDir, "stack.log"))).toBe(true);
    const keep = process.env[KEEP_STATE_ENV];
    delete process.env[KEEP_STATE_ENV]; // this case checks the default
    try {
      await stack.stop();
    } finally {
      if (keep !== undefined) process.env[KEEP_STATE_ENV] = keep;
    }
    expect(existsSync(stack.stateDir)).toBe(false);
  });
});
