/**
 * The step-events interceptor (host/activities/step-events.ts) around a real activity context
 * (@temporalio/testing's MockActivityEnvironment runs it): every attempt's start and end reach the
 * edge, in order; and an edge that is down does not hold the step past its delivery wait
 * (DELIVERY_WAIT_MS), one for all of an attempt's waits together.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { MockActivityEnvironment } from "@temporalio/testing";
import { afterEach, describe, expect, it } from "vitest";
import { fetchRecorded } from "../../host/activities/http.ts";
import { askModel } from "../../host/activities/llm.ts";
import { policyFromEnv } from "../../host/activities/outbound-guard.ts";
import { type ActivityRuntime, installActivityRuntime, StepPublisher } from "../../host/activities/runtime.ts";
import { MAX_STEP_OUTPUT_BYTES, StepEventsInterceptor } from "../../host/activities/step-events.ts";
import { EdgeClient } from "../../host/edge-client.ts";
import { createLocalLlmServer } from "../../host/local-llm/server.ts";
import { RunEventJournal } from "../../host/run-event-journal.ts";
import type { RunEvent, RunEventPush } from "../../src/shared/host-api.ts";
import { runEventPush } from "../../src/shared/run-event-schema.ts";

const SECRET = "step-events-test-secret-long-enough-for-hmac"; // test-only

let server: Server | undefined;
afterEach(() => new Promise<void>((r) => (server ? server.close(() => r()) : r())));

/**
 * A stand-in edge that keeps the events' types as it takes them (and how many pushes it took);
 * it answers 503 to its first `unavailable` requests, as an edge that is down for a while.
 */
async function recordingEdge(unavailable = 0) {
  const received: string[] = [];
  /** The events themselves, as the edge took them. */
  const events: RunEvent[] = [];
  const taken = { pushes: 0 };
  let requests = 0;
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      if (++requests <= unavailable) return void res.writeHead(503).end();
      const push = JSON.parse(Buffer.concat(chunks).toString()) as RunEventPush;
      taken.pushes++;
      for (const run of push.runs) events.push(...run.events);
      for (const run of push.runs)
        for (const e of run.events)
          received.push(`${e.type}:${(e.data as { state?: string; text?: string }).state ?? (e.data as { text?: string }).text ?? ""}`);
      const accepted = push.runs.reduce((n, run) => n + run.events.length, 0);
      res
        .writeHead(200, { "content-type": "application/json" })
        .end(JSON.stringify({ runs: push.runs.length, accepted, duplicates: 0, dropped: 0 }));
    });
  });
  await new Promise<void>((r) => server!.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${(server!.address() as AddressInfo).port}`, received, events, taken };
}

function install(edge: EdgeClient) {
  installActivityRuntime({ edge, prices: {}, llm: {}, httpRequestCost: 0 } as unknown as ActivityRuntime);
}

/** Runs `activity` as one attempt, inside the interceptor. */
function attempt<T>(interceptor: StepEventsInterceptor, activity: () => Promise<T>): Promise<T> {
  const env = new MockActivityEnvironment(undefined, { interceptors: [() => ({ inbound: interceptor })] });
  return env.run(activity);
}

describe("step events: happy path", () => {
  it("an attempt's start and end are recorded by the edge, in order, before the step ends", async () => {
    const edge = await recordingEdge();
    install(new EdgeClient(edge.url, SECRET, () => undefined, 3, 5));
    expect(await attempt(new StepEventsInterceptor(), async () => "done")).toBe("done");
    expect(edge.received).toEqual(["step:started", "step:completed"]);
    await expect(attempt(new StepEventsInterceptor(), async () => Promise.reject(new Error("boom")))).rejects.toThrow("boom");
    expect(edge.received.slice(2)).toEqual(["step:started", "step:failed"]);
  });

  it("a step's outputs of 100,000 characters of JSON reach the edge whole (the edge keeps outputs of up to Temporal's 2 MiB), not as {truncated, size}", async () => {
    const edge = await recordingEdge();
    install(new EdgeClient(edge.url, SECRET, () => undefined, 3, 5));
    const outputs = { text: "x".repeat(100_000 - 11) };
    expect(JSON.stringify(outputs).length).toBe(100_000);
    await attempt(new StepEventsInterceptor(), async () => outputs);
    const completed = edge.events.find((e) => e.type === "step" && e.data.state === "completed");
    expect(completed?.data).toMatchObject({ state: "completed", outputs });
    expect(completed?.data).not.toHaveProperty("outputsOmitted");
  });
});

describe("step events: outputs past MAX_STEP_OUTPUT_BYTES", () => {
  it("are left out of the step event, which says so (outputsOmitted, outputsSize in UTF-8 bytes) instead of carrying a {truncated, size} object a step could have returned; the step's result is its own", async () => {
    const edge = await recordingEdge();
    install(new EdgeClient(edge.url, SECRET, () => undefined, 3, 5));
    // Two-byte characters: the cap is in bytes (as Temporal's), not characters.
    const outputs = { text: "é".repeat(MAX_STEP_OUTPUT_BYTES / 2) };
    const size = Buffer.byteLength(JSON.stringify(outputs));
    expect(JSON.stringify(outputs).length).toBeLessThan(MAX_STEP_OUTPUT_BYTES);
    expect(await attempt(new StepEventsInterceptor(), async () => outputs)).toBe(outputs);
    const completed = edge.events.find((e) => e.type === "step" && e.data.state === "completed");
    expect(completed?.data).toMatchObject({ state: "completed", outputsOmitted: true, outputsSize: size });
    expect(completed?.data).not.toHaveProperty("outputs");
    // Its push is one the edge takes: within the push and signed body limits.
    expect(runEventPush.safeParse({ runs: [{ workflowId: "w", events: [completed] }] }).success).toBe(true);
  });

  it("outputs of exactly MAX_STEP_OUTPUT_BYTES are sent whole", async () => {
    const edge = await recordingEdge();
    install(new EdgeClient(edge.url, SECRET, () => undefined, 3, 5));
    const outputs = "y".repeat(MAX_STEP_OUTPUT_BYTES - 2);
    await attempt(new StepEventsInterceptor(), async () => outputs);
    const completed = edge.events.find((e) => e.type === "step" && e.data.state === "completed");
    expect(completed?.data).toMatchObject({ state: "completed", outputs });
    expect(completed?.data).not.toHaveProperty("outputsOmitted");
  });
});

describe("step events: source keys", () => {
  it("security: publishers of one attempt never share a source key (a step that calls the HTTP helper twice, each with a new StepPublisher): the edge, which drops a repeated key, records every request", async () => {
    const edge = await recordingEdge();
    install(new EdgeClient(edge.url, SECRET, () => undefined, 3, 5));
    const request = (page: string) => ({
      type: "http:request",
      method: "GET",
      url: `https://example.com/${page}`,
      status: 200,
      count: 1,
      total: 0.01,
    });
    await attempt(new StepEventsInterceptor(), async () => {
      // As fetchRecorded(new StepPublisher(), url) twice, then a model call's own publisher.
      for (const page of ["a", "b"]) {
        const publisher = new StepPublisher();
        void publisher.attribute(request(page));
        await publisher.settled();
      }
      const model = new StepPublisher();
      void model.thinking("hmm");
      void model.attribute(request("c"));
      await model.settled();
    });
    const keys = edge.events.map((e) => e.sourceKey);
    expect(edge.events.filter((e) => e.type === "attribute")).toHaveLength(3);
    expect(new Set(keys).size).toBe(keys.length);
  });
});

describe("step events: bad attributes", () => {
  it("an attribute the edge would refuse (a usage without its per-kind lines) fails the step that publishes it, naming the field, and sends nothing", async () => {
    const edge = await recordingEdge();
    install(new EdgeClient(edge.url, SECRET, () => undefined, 3, 5));
    const env = new MockActivityEnvironment();
    await expect(
      env.run(async () => {
        const publisher = new StepPublisher();
        void publisher.attribute({ type: "llm:usage", modelId: "local/echo", total: 0.01, tokensUsed: 5 } as never);
        await publisher.flush();
      }),
    ).rejects.toThrow(/llm:usage attribute.*usage/);
    expect(edge.received).toEqual([]);
  });
});

describe("step events: errors (the edge is down)", () => {
  it("the step ends after the wait, with its own result or error; the push goes on retrying behind it", async () => {
    // A port nothing listens on, and retries that outlast the test: only the bounded wait lets the step end.
    const logs: string[] = [];
    const client = new EdgeClient("http://127.0.0.1:9", SECRET, (m) => logs.push(m), 1_000, 5);
    install(client);
    const interceptor = new StepEventsInterceptor(200);
    expect(await attempt(interceptor, async () => ({ words: 2 }))).toEqual({ words: 2 });
    await expect(attempt(interceptor, async () => Promise.reject(new Error("boom")))).rejects.toThrow("boom");
    expect(logs.some((m) => m.includes("failed") && m.includes("retrying"))).toBe(true);
  });

  it("an attempt's waits share one delivery wait: a step that publishes after each of several fetches ends after one wait, not one per fetch", async () => {
    const client = new EdgeClient("http://127.0.0.1:9", SECRET, () => undefined, 1_000, 5);
    const waitMs = 600;
    installActivityRuntime({ edge: client, prices: {}, llm: {}, httpRequestCost: 0, deliveryWaitMs: waitMs } as unknown as ActivityRuntime);
    const startedAt = Date.now();
    const result = await attempt(new StepEventsInterceptor(), async () => {
      const publisher = new StepPublisher();
      // As fetchRecorded does after each fetch: publish the request, then wait for its delivery.
      for (const page of ["a", "b", "c"]) {
        void publisher.attribute({
          type: "http:request",
          method: "GET",
          url: `https://example.com/${page}`,
          status: 200,
          count: 1,
          total: 0,
        });
        await publisher.settled();
      }
      return "read";
    });
    const elapsed = Date.now() - startedAt;
    expect(result).toBe("read");
    // It did wait for the edge (the first wait ran out)...
    expect(elapsed).toBeGreaterThanOrEqual(waitMs - 20);
    // ...once in all: three fetches and the step's end, each waiting its own 600 ms, take 2.4 s.
    expect(elapsed).toBeLessThan(waitMs * 2.5);
  });

  it("events published while the edge is down wait together, then arrive in order (not one retry cycle each)", async () => {
    const edge = await recordingEdge(3);
    install(new EdgeClient(edge.url, SECRET, () => undefined, 30, 5));
    const env = new MockActivityEnvironment();
    await env.run(async () => {
      const publisher = new StepPublisher();
      for (const text of ["a", "b", "c", "d", "e"]) void publisher.thinking(text);
      await publisher.flush();
    });
    expect(edge.received).toEqual(["thinking:a", "thinking:b", "thinking:c", "thinking:d", "thinking:e"]);
    // They were handed over together: one push (or two, if the first left before the rest were
    // queued) retried through the outage, not five one after another.
    expect(edge.taken.pushes).toBeLessThanOrEqual(2);
  });
});

/** V8's collector, which the host test config does not expose: turned on here for this process. */
function collector(): () => void {
  setFlagsFromString("--expose-gc");
  return runInNewContext("gc") as () => void;
}

describe("step events: memory while the edge is down", () => {
  it("events waiting in the journal's file for room are not also kept in memory by their publishers: the journal's bound on memory holds through a long outage", async () => {
    const gc = collector();
    const dir = mkdtempSync(join(tmpdir(), "outrider-step-memory-"));
    // A port nothing listens on, and tries that outlast the test: the first row stays with the
    // EdgeClient, and the journal's bound (one row in flight) keeps every other one in its file.
    const journal = new RunEventJournal(
      join(dir, "journal.sqlite"),
      new EdgeClient("http://127.0.0.1:9", SECRET, () => undefined, 1_000_000, 5),
      () => undefined,
      { rows: 1, bytes: 1024 * 1024 },
    );
    try {
      installActivityRuntime({ edge: journal, prices: {}, llm: {}, httpRequestCost: 0, deliveryWaitMs: 0 } as unknown as ActivityRuntime);
      const released = new Set<number>();
      const registry = new FinalizationRegistry<number>((n) => released.add(n));
      const steps = 20;
      await new MockActivityEnvironment().run(async () => {
        for (let n = 0; n < steps; n++) {
          // A step's end with large outputs, as the interceptor publishes it.
          const outputs = { text: `${n}:${"o".repeat(200_000)}` };
          registry.register(outputs, n);
          void new StepPublisher().step("completed", { outputs });
        }
      });
      expect(journal.size()).toBe(steps);
      for (let i = 0; i < 20 && released.size < steps - 1; i++) {
        gc();
        await new Promise((r) => setTimeout(r, 10));
      }
      // Only the row with the EdgeClient is in memory; the others are in the file alone.
      expect(released.size).toBe(steps - 1);
      expect(released.has(0)).toBe(false);
    } finally {
      journal.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("a step's own events while the edge is down: the step waits for them at most the delivery wait", () => {
  it("a fetch's http:request and a model call's usage do not hold the step (the push goes on behind it, from the journal)", async () => {
    const site = createServer((_req, res) => res.end("page"));
    await new Promise<void>((r) => site.listen(0, "127.0.0.1", r));
    const port = (site.address() as AddressInfo).port;
    const llm = createLocalLlmServer();
    await new Promise<void>((r) => llm.server.listen(0, "127.0.0.1", r));
    try {
      // A port nothing listens on, and retries that outlast the test: only the bounded wait lets the step end.
      const edge = new EdgeClient("http://127.0.0.1:9", SECRET, () => undefined, 1_000, 5);
      installActivityRuntime({
        edge,
        prices: {},
        llm: { localBaseUrl: `http://127.0.0.1:${(llm.server.address() as AddressInfo).port}/v1` },
        httpRequestCost: 0,
        deliveryWaitMs: 200,
        outbound: policyFromEnv({ OUTBOUND_HTTP_ALLOW: `127.0.0.1:${port}` }),
      } as unknown as ActivityRuntime);
      const text = await new MockActivityEnvironment().run(async () =>
        (await fetchRecorded(new StepPublisher(), `http://127.0.0.1:${port}/`)).text(),
      );
      expect(text).toBe("page");
      const answer = await new MockActivityEnvironment().run(
        async () => (await askModel({ modelId: "local/writer", prompt: "hello there" })).text,
      );
      expect(answer).toContain("hello there");
    } finally {
      for (const server of [site, llm.server]) {
        server.closeAllConnections();
        await new Promise<void>((r) => server.close(() => r()));
      }
    }
  }, 15_000);
});
