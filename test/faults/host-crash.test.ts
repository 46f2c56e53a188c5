/**
 * Faults around the Node host, on a stack whose host the test starts and kills itself.
 * The RunStream watchdog runs with a 2 s quiet period here (30 s by default).
 */
import { Client, Connection } from "@temporalio/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { collectHistoryStream } from "../support/sse.ts";
import { startHostProcess, type HostProcess } from "../support/host-process.ts";
import { startStack, type RunningStack } from "../support/stack.ts";

const SECRET = `faults-${crypto.randomUUID()}`; // test-only

let stack: RunningStack;
let client: Client;
let host: HostProcess | undefined;

const hostEnv = () => ({
  HOST_SHARED_SECRET: SECRET,
  HOST_PORT: String(stack.ports.host),
  LOCAL_LLM_PORT: String(stack.ports.localLlm),
  EDGE_URL: stack.baseUrl,
  TEMPORAL_ADDRESS: stack.temporalAddress,
});

async function api(path: string, init: RequestInit = {}) {
  return fetch(`${stack.baseUrl}${path}`, {
    ...init,
    headers: { authorization: `Bearer ${stack.apiKey}`, "content-type": "application/json", ...(init.headers as Record<string, string>) },
  });
}

async function waitForStatus(workflowId: string, wanted: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { status } = (await (await api(`/workflow/${workflowId}/status`)).json()) as { status: string };
    if (status === wanted) return;
    if (Date.now() > deadline) throw new Error(`run stayed ${status}, wanted ${wanted}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

beforeAll(async () => {
  // Free ports for everything; the host the test starts takes the port the stack chose for it.
  stack = await startStack({ startHost: false, env: { HOST_SHARED_SECRET: SECRET, RUN_WATCHDOG_QUIET_MS: "2000" } });
  client = new Client({ connection: await Connection.connect({ address: stack.temporalAddress }) });
  host = await startHostProcess(hostEnv());
});

afterAll(async () => {
  await host?.kill();
  await client?.connection.close();
  await stack?.stop();
});

describe("the Node host crashes mid-run", () => {
  it("after a restart the run completes and a subscriber gets every event exactly once", async () => {
    const start = await api("/workflow/start", { method: "POST", body: JSON.stringify({ workflowName: "two_steps", input: { text: "survive this", pauseMs: 3000 } }) });
    const { workflowId } = (await start.json()) as { workflowId: string };
    const stream = await api(`/workflow/${workflowId}/history/stream`);
    const collected = collectHistoryStream(stream.body!);

    await new Promise((r) => setTimeout(r, 1000)); // inside the pause between the steps
    await host!.kill();
    host = await startHostProcess(hostEnv());

    const seen = await collected;
    const history = await client.workflow.getHandle(workflowId).fetchHistory();
    expect(seen.eventIds).toEqual(history.events!.map((e) => Number(e.eventId)));
    expect(seen.done).toEqual([{ reason: "completed" }]);
    await waitForStatus(workflowId, "completed");
  });

  it("a run that ended while the host was down is reconciled by the watchdog: no run stays running", async () => {
    const start = await api("/workflow/start", { method: "POST", body: JSON.stringify({ workflowName: "two_steps", input: { text: "ended elsewhere", pauseMs: 10_000 } }) });
    const { workflowId } = (await start.json()) as { workflowId: string };
    const stream = await api(`/workflow/${workflowId}/history/stream`);
    const collected = collectHistoryStream(stream.body!);

    await new Promise((r) => setTimeout(r, 500));
    await host!.kill();
    // The run ends while no host is there to see it...
    await client.workflow.getHandle(workflowId).terminate("operator stopped it while the host was down");
    // ...and the restarted host only re-attaches to runs that are still open.
    host = await startHostProcess(hostEnv());

    const seen = await collected; // ends only if the watchdog brought the rest of the history
    const history = await client.workflow.getHandle(workflowId).fetchHistory();
    expect(seen.eventIds).toEqual(history.events!.map((e) => Number(e.eventId)));
    expect(seen.done).toEqual([{ reason: "terminated" }]);
    // The D1 row, read without asking the host (status reads of terminal rows never do).
    await waitForStatus(workflowId, "terminated", 5_000);
  });

  it("with the host down, start answers 503 host_unavailable with Retry-After and leaves no run", async () => {
    await host!.kill();
    try {
      const res = await api("/workflow/start", { method: "POST", body: JSON.stringify({ workflowName: "hello", input: { name: "nobody" } }) });
      expect(res.status).toBe(503);
      expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe("host_unavailable");
    } finally {
      host = await startHostProcess(hostEnv());
    }
  });
});
