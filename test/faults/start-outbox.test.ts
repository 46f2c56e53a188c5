/**
 * The start path's outbox (docs/start-path.md): the host's answer to a start arrives after the
 * edge gave up on it. Temporal did start the run, so the edge must keep it: the start is
 * accepted (`runId: null`), the run's DO retries it under the same workflow id and accept id, and
 * the run is recorded and runs exactly once. A proxy in front of the host holds back its answers
 * to starts while `holdStarts` is set.
 */
import { createServer, type Server } from "node:http";
import { Client, Connection } from "@temporalio/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { START_ATTEMPT_TIMEOUT_MS } from "../../durable-objects/run-stream/constants.ts";
import { startHostProcess, type HostProcess } from "../support/host-process.ts";
import { freePort } from "../support/ports.ts";
import { freeStackPorts, startStack, type RunningStack, type StackPorts } from "../support/stack.ts";

let PORTS: StackPorts;
/** The real host listens here; the edge's HOST_URL (PORTS.host) is the proxy. */
let REAL_HOST_PORT: number;
const SECRET = `faults-${crypto.randomUUID()}`; // test-only

let stack: RunningStack;
let client: Client;
let host: HostProcess | undefined;
let proxy: Server;
let holdStarts = false;
let heldStarts = 0;

/** Forwards everything to the real host; answers to starts come START_ATTEMPT_TIMEOUT_MS + 2 s late while holdStarts is set. */
function startProxy(): Promise<Server> {
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const headers = Object.fromEntries(
      Object.entries(req.headers).filter(([k]) => !["host", "connection", "content-length"].includes(k)),
    ) as Record<string, string>;
    try {
      const upstream = await fetch(`http://127.0.0.1:${REAL_HOST_PORT}${req.url}`, {
        method: req.method,
        headers,
        body: chunks.length ? Buffer.concat(chunks) : undefined,
      });
      const body = Buffer.from(await upstream.arrayBuffer());
      if (holdStarts && req.url === "/v1/runs/start") {
        heldStarts++;
        await new Promise((r) => setTimeout(r, START_ATTEMPT_TIMEOUT_MS + 2_000));
      }
      res.writeHead(upstream.status, { "content-type": upstream.headers.get("content-type") ?? "application/json" });
      res.end(body);
    } catch {
      res.destroy();
    }
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject); // e.g. the port was taken since the stack checked it: the hook fails with why
    server.listen(PORTS.host, "127.0.0.1", () => resolve(server));
  });
}

async function api(path: string, init: RequestInit = {}) {
  return fetch(`${stack.baseUrl}${path}`, {
    ...init,
    headers: { authorization: `Bearer ${stack.apiKey}`, "content-type": "application/json", ...(init.headers as Record<string, string>) },
  });
}

async function waitForStatus(workflowId: string, wanted: string, timeoutMs = 90_000): Promise<{ status: string; runId: string | null }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const body = (await (await api(`/workflow/${workflowId}/status`)).json()) as { status: string; runId: string | null };
    if (body.status === wanted) return body;
    if (Date.now() > deadline) throw new Error(`run stayed ${body.status}, wanted ${wanted}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Every Temporal execution under this workflow id (visibility may lag a little: poll until it settles). */
async function executions(workflowId: string): Promise<string[]> {
  let runIds: string[] = [];
  for (let i = 0; i < 20; i++) {
    runIds = [];
    for await (const e of client.workflow.list({ query: `WorkflowId = '${workflowId}'` })) runIds.push(e.runId);
    if (runIds.length > 0) return runIds;
    await new Promise((r) => setTimeout(r, 250));
  }
  return runIds;
}

beforeAll(async () => {
  PORTS = await freeStackPorts();
  stack = await startStack({ ports: PORTS, startHost: false, env: { HOST_SHARED_SECRET: SECRET } });
  proxy = await startProxy(); // after the stack, which checks that the host port is free
  client = new Client({ connection: await Connection.connect({ address: stack.temporalAddress }) });
  // Chosen only now: a port picked before the stack started could since be one of its processes'.
  REAL_HOST_PORT = await freePort();
  host = await startHostProcess({
    HOST_SHARED_SECRET: SECRET,
    HOST_PORT: String(REAL_HOST_PORT),
    EDGE_URL: stack.baseUrl,
    TEMPORAL_ADDRESS: stack.temporalAddress,
  });
});

afterAll(async () => {
  await host?.kill();
  await client?.connection.close();
  await stack?.stop();
  await new Promise((r) => proxy?.close(r));
});

describe("a start whose answer comes after the edge's timeout", () => {
  it("is accepted (runId null), recorded, and runs exactly once under its workflow id", async () => {
    holdStarts = true;
    let workflowId: string;
    try {
      const res = await api("/workflow/start", {
        method: "POST",
        body: JSON.stringify({ workflowName: "hello", input: { name: "late answer" } }),
      });
      expect(res.status).toBe(200);
      const body = (await res.json()) as { workflowId: string; runId: string | null; status: string };
      expect(body).toMatchObject({ runId: null, status: "scheduled" });
      expect(heldStarts).toBe(1);
      workflowId = body.workflowId;
    } finally {
      holdStarts = false;
    }
    // Temporal had started it: the row follows it to the end, and nothing started it twice.
    const final = await waitForStatus(workflowId, "completed");
    expect(await executions(workflowId)).toEqual([final.runId]);
    const result = (await (await api(`/workflow/${workflowId}/result`)).json()) as { output: unknown; runId: string };
    expect(result.output).toEqual({ greeting: "Hello, late answer!" });
    // The outbox's retry asked again after the run had ended: still one execution.
    await new Promise((r) => setTimeout(r, 2 * START_ATTEMPT_TIMEOUT_MS));
    expect(await executions(workflowId)).toEqual([final.runId]);
  });

  it("the blocking route waits through it (the host's events name the run while its answer is held) and answers the outcome; the run completes once", async () => {
    holdStarts = true;
    let workflowId: string;
    try {
      const res = await api("/workflow/run", {
        method: "POST",
        body: JSON.stringify({ workflowName: "hello", input: { name: "late run" } }),
      });
      // Not a 202 `scheduled`, which Output's clients read as a finished run: the wait goes on.
      const body = (await res.json()) as { workflowId: string; status: string; output: unknown };
      expect(res.status, JSON.stringify(body)).toBe(200);
      expect(body).toMatchObject({ status: "completed", output: { greeting: "Hello, late run!" } });
      expect(heldStarts).toBeGreaterThanOrEqual(1);
      workflowId = body.workflowId;
    } finally {
      holdStarts = false;
    }
    const final = await waitForStatus(workflowId, "completed");
    expect(await executions(workflowId)).toEqual([final.runId]);
  });
});
