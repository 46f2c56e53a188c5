/**
 * Faults around the Node host, on a stack whose host the test starts and kills itself.
 * The RunStream watchdog runs with a 2 s quiet period here (30 s by default).
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { Client, Connection } from "@temporalio/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { collectHistoryStream, readSse } from "../support/sse.ts";
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
  // One journal for every host this file starts: a restarted host delivers what the killed one left.
  HOST_RUN_EVENT_JOURNAL: join(stack.stateDir, "host-run-events.sqlite"),
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

/** A run's log as the viewer reads it: its entry ids, and the activities whose step started and completed, sorted. */
async function stepsInLog(run: { workflowId: string; streamToken: string }) {
  const log = await fetch(`${stack.baseUrl}/runs/${run.workflowId}/events?token=${run.streamToken}`);
  const ids: string[] = [];
  const steps = { started: new Set<string>(), completed: new Set<string>() };
  for await (const m of readSse(log.body!)) {
    if (m.id) ids.push(m.id);
    if (m.event === "step") {
      const step = JSON.parse(m.data) as { activityId: string; state: string };
      if (step.state === "started" || step.state === "completed") steps[step.state].add(step.activityId);
    }
    if (m.event === "done") break;
  }
  return { ids, started: [...steps.started].sort(), completed: [...steps.completed].sort() };
}

/** The activity ids that completed in the run's Temporal history, sorted. */
async function completedActivities(workflowId: string): Promise<string[]> {
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  return history
    .events!.filter((e) => e.activityTaskCompletedEventAttributes)
    .map((e) => history.events!.find((s) => Number(s.eventId) === Number(e.activityTaskCompletedEventAttributes!.scheduledEventId))!)
    .map((s) => s.activityTaskScheduledEventAttributes!.activityId!)
    .sort();
}

/**
 * An HTTP proxy to the edge for the host's pushes that answers 503 while `blocked`: the edge
 * unreachable from the host while the API itself (and the edge's calls to the host) go on.
 */
async function edgeProxy() {
  const state = { blocked: false };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", async () => {
      if (state.blocked) {
        res.writeHead(503).end();
        return;
      }
      const answer = await fetch(`${stack.baseUrl}${req.url}`, {
        method: req.method,
        headers: Object.fromEntries(Object.entries(req.headers).filter(([k]) => k !== "host" && k !== "content-length")) as Record<
          string,
          string
        >,
        body: chunks.length > 0 ? Buffer.concat(chunks) : undefined,
      }).catch(() => null);
      if (!answer) return void res.writeHead(502).end();
      res.writeHead(answer.status, { "content-type": answer.headers.get("content-type") ?? "application/json" }).end(await answer.text());
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    state,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
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
    const start = await api("/workflow/start", {
      method: "POST",
      body: JSON.stringify({ workflowName: "two_steps", input: { text: "survive this", pauseMs: 3000 } }),
    });
    const { workflowId } = (await start.json()) as { workflowId: string };
    const stream = await api(`/workflow/${workflowId}/history/stream`);
    const collected = collectHistoryStream(stream.body!);

    await new Promise((r) => setTimeout(r, 1000)); // inside the pause between the steps
    await host!.kill();
    // The kill landed mid-run (a slow start could have let the run finish first, testing nothing).
    expect((await client.workflow.getHandle(workflowId).describe()).status.name).toBe("RUNNING");
    host = await startHostProcess(hostEnv());

    const seen = await collected;
    const history = await client.workflow.getHandle(workflowId).fetchHistory();
    expect(seen.eventIds).toEqual(history.events!.map((e) => Number(e.eventId)));
    expect(seen.done).toEqual([{ reason: "WORKFLOW_EXECUTION_COMPLETED" }]);
    await waitForStatus(workflowId, "completed");
  });

  it("a run that ended while the host was down is reconciled by the watchdog: no run stays running", async () => {
    const start = await api("/workflow/start", {
      method: "POST",
      body: JSON.stringify({ workflowName: "two_steps", input: { text: "ended elsewhere", pauseMs: 10_000 } }),
    });
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
    expect(seen.done).toEqual([{ reason: "WORKFLOW_EXECUTION_TERMINATED" }]);
    // The D1 row, read without asking the host (status reads of terminal rows never do).
    await waitForStatus(workflowId, "terminated", 5_000);
  });

  it("with the host down, start accepts the run (runId null); it runs exactly once when the host is back", async () => {
    await host!.kill();
    let workflowId: string;
    try {
      const res = await api("/workflow/start", {
        method: "POST",
        body: JSON.stringify({ workflowName: "hello", input: { name: "nobody" } }),
      });
      expect(res.status).toBe(200);
      const body = (await res.json()) as { workflowId: string; runId: string | null; status: string };
      expect(body).toMatchObject({ runId: null, status: "scheduled" });
      workflowId = body.workflowId;
      // While the host is away the row says what is true: accepted, not started.
      expect(((await (await api(`/workflow/${workflowId}/status`)).json()) as { status: string }).status).toBe("scheduled");
      // Readiness says the host is away (no key needed), once the last positive answer (2 s) has aged out.
      await new Promise((r) => setTimeout(r, 2_100));
      const ready = await fetch(`${stack.baseUrl}/ready`);
      expect(ready.status).toBe(503);
      expect(Number(ready.headers.get("retry-after"))).toBeGreaterThan(0);
    } finally {
      host = await startHostProcess(hostEnv());
    }
    await waitForStatus(workflowId, "completed", 90_000);
    const executions: string[] = [];
    for await (const e of client.workflow.list({ query: `WorkflowId = '${workflowId}'` })) executions.push(e.runId);
    expect(executions).toHaveLength(1);
  });
});

describe("the Node host crashes between two pushes of batched run events", () => {
  it("loses nothing and duplicates nothing: every run completes with its whole history and every step's end in its log", async () => {
    // A long push window: events wait 400 ms in the host before they go out, so a kill lands
    // after one push and before the next, with the next one's events only in the host's memory.
    await host!.kill();
    host = await startHostProcess({ ...hostEnv(), EDGE_PUSH_WINDOW_MS: "400" });
    try {
      const runs = await Promise.all(
        Array.from({ length: 4 }, async (_, i) => {
          const res = await api("/workflow/start", {
            method: "POST",
            body: JSON.stringify({ workflowName: "two_steps", input: { text: `batch ${i}`, pauseMs: 1500 } }),
          });
          expect(res.status).toBe(200);
          return (await res.json()) as { workflowId: string; streamToken: string };
        }),
      );
      // Opened now, collected while the runs go on (awaiting the collection here would wait for their ends).
      const bodies = await Promise.all(runs.map(async (r) => (await api(`/workflow/${r.workflowId}/history/stream`)).body!));
      const streams = bodies.map((body) => collectHistoryStream(body));
      // Wait until a first push has reached the edge (the runs' first history is in D1's view of the log)...
      const firstPushed = await Promise.race([
        (async () => {
          for (;;) {
            const page = (await (await api(`/workflow/${runs[0]!.workflowId}/history`)).json()) as { events?: unknown[] };
            if ((page.events?.length ?? 0) > 0) return true;
            await new Promise((r) => setTimeout(r, 50));
          }
        })(),
        new Promise<false>((r) => setTimeout(() => r(false), 20_000)),
      ]);
      expect(firstPushed).toBe(true);
      // ...then kill the host inside the next window, with events queued and not yet pushed.
      await new Promise((r) => setTimeout(r, 150));
      await host!.kill();
      // The kill landed while the runs went on (each pauses 1.5 s between its steps).
      const open = await Promise.all(runs.map(async (r) => (await client.workflow.getHandle(r.workflowId).describe()).status.name));
      expect(open.filter((s) => s === "RUNNING").length, open.join(",")).toBeGreaterThan(0);
      host = await startHostProcess(hostEnv());

      const seen = await Promise.all(streams);
      for (const [i, run] of runs.entries()) {
        const history = await client.workflow.getHandle(run.workflowId).fetchHistory();
        expect(seen[i]!.eventIds).toEqual(history.events!.map((e) => Number(e.eventId)));
        expect(seen[i]!.done).toEqual([{ reason: "WORKFLOW_EXECUTION_COMPLETED" }]);
        await waitForStatus(run.workflowId, "completed");
        // The run's log (the viewer's view of it): each log entry once, and the end of every
        // activity that completed in Temporal is there as a step event.
        const log = await stepsInLog(run);
        expect(new Set(log.ids).size).toBe(log.ids.length);
        expect(log.completed).toEqual(await completedActivities(run.workflowId));
      }
    } finally {
      await host?.kill();
      host = await startHostProcess(hostEnv());
    }
  });
});

describe("the Node host crashes while the edge cannot take its run events", () => {
  it("what activities published and the edge never got survives the kill: every step's start and end reaches the run's log, once", async () => {
    const proxy = await edgeProxy();
    await host!.kill();
    host = await startHostProcess({ ...hostEnv(), EDGE_URL: proxy.url });
    try {
      proxy.state.blocked = true;
      const res = await api("/workflow/start", {
        method: "POST",
        body: JSON.stringify({ workflowName: "two_steps", input: { text: "kept in the journal", pauseMs: 100 } }),
      });
      expect(res.status).toBe(200);
      const run = (await res.json()) as { workflowId: string; streamToken: string };
      // The run ends in Temporal (each step waits a while for its end to be recorded, then goes
      // on); its step events are still waiting for the edge in the host...
      await client.workflow.getHandle(run.workflowId).result();
      // ...when the host is killed, and comes back with the edge within reach.
      await host!.kill();
      host = await startHostProcess(hostEnv());

      await waitForStatus(run.workflowId, "completed");
      const activities = await completedActivities(run.workflowId);
      expect(activities).toHaveLength(2);
      // The journal's events may come after the history that completes the run: read until they are there.
      let log = await stepsInLog(run);
      for (const deadline = Date.now() + 20_000; log.completed.length < activities.length && Date.now() < deadline; ) {
        await new Promise((r) => setTimeout(r, 250));
        log = await stepsInLog(run);
      }
      expect(log.completed).toEqual(activities);
      expect(log.started).toEqual(activities);
      expect(new Set(log.ids).size).toBe(log.ids.length);
    } finally {
      await proxy.close();
      await host?.kill();
      host = await startHostProcess(hostEnv());
    }
  });
});
