/**
 * A step whose attempt is cancelled (its run cancelled or terminated, the worker shutting down)
 * stops what it waits on at once: a model call stops the provider's generation (providers bill by
 * the token, and nobody reads the rest), a page fetch hangs up. The activities run in
 * @temporalio/testing's MockActivityEnvironment, against stand-in servers that send one chunk every
 * 50 ms for as long as the client listens.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { CancelledFailure } from "@temporalio/activity";
import { MockActivityEnvironment } from "@temporalio/testing";
import { afterEach, describe, expect, it } from "vitest";
import { askModel } from "../../host/activities/llm.ts";
import { policyFromEnv } from "../../host/activities/outbound-guard.ts";
import { fetchPageText } from "../../host/activities/research.ts";
import { type ActivityRuntime, installActivityRuntime } from "../../host/activities/runtime.ts";
import { EdgeClient } from "../../host/edge-client.ts";
import type { RunEvent } from "../../src/shared/host-api.ts";
import { until } from "../support/until.ts";

let server: Server | undefined;
afterEach(async () => {
  server?.closeAllConnections();
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = undefined;
});

/**
 * A server whose answer never ends on its own: `head` first, then `chunk` every 50 ms;
 * `closed` once the client hangs up.
 */
async function endlessServer(contentType: string, head: string, chunk: string) {
  const state = { chunks: 0, closed: false };
  server = createServer((req, res) => {
    res.writeHead(200, { "content-type": contentType });
    res.write(head);
    const timer = setInterval(() => {
      state.chunks++;
      res.write(chunk);
    }, 50);
    res.on("close", () => {
      clearInterval(timer);
      state.closed = true;
    });
    req.resume();
  });
  await new Promise<void>((r) => server!.listen(0, "127.0.0.1", r));
  return { origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, state };
}

/** An OpenAI-compatible chat completions stream that never ends. */
async function endlessProvider() {
  const chunk = {
    id: "c1",
    object: "chat.completion.chunk",
    created: 0,
    model: "writer",
    choices: [{ index: 0, delta: { content: "word " }, finish_reason: null }],
  };
  const { origin, state } = await endlessServer("text/event-stream", "", `data: ${JSON.stringify(chunk)}\n\n`);
  return { baseUrl: `${origin}/v1`, state };
}

/** A page whose body never ends. */
async function endlessPage() {
  const { origin, state } = await endlessServer("text/html", "<html><head><title>slow</title></head><body>", "<p>more</p>");
  return { url: `${origin}/page`, state };
}

describe("a model call in a cancelled attempt", () => {
  it("stops the provider's stream at once and ends cancelled; while it streams, it heartbeats (how Temporal tells it)", async () => {
    const provider = await endlessProvider();
    const published: RunEvent[] = [];
    installActivityRuntime({
      edge: { pushRunEvents: async (_workflowId: string, events: RunEvent[]) => void published.push(...events) },
      prices: {},
      llm: { localBaseUrl: provider.baseUrl },
      httpRequestCost: 0,
      deliveryWaitMs: 200,
    } as unknown as ActivityRuntime);
    const env = new MockActivityEnvironment();
    let heartbeats = 0;
    env.on("heartbeat", () => heartbeats++);
    const attempt = env.run(() => askModel({ modelId: "local/writer", prompt: "go on for ever" }));
    const outcome = attempt.then(
      () => "answered",
      (err: unknown) => err,
    );
    expect(await until(() => provider.state.chunks >= 5, 5_000)).toBe(true);
    env.cancel();
    expect(await until(() => provider.state.closed, 2_000)).toBe(true);
    expect(await outcome).toBeInstanceOf(CancelledFailure);
    expect(heartbeats).toBeGreaterThan(0);
    // What it generated before it stopped is billed by the provider: recorded as estimated usage.
    const usage = published.filter((e) => e.type === "attribute").map((e) => (e.data as { attribute: Record<string, unknown> }).attribute);
    expect(usage).toEqual([expect.objectContaining({ type: "llm:usage", modelId: "local/writer", estimated: true })]);
    expect((usage[0]!.usage as Array<{ type: string; amount: number }>)[1]).toMatchObject({ type: "output" });
    expect((usage[0]!.usage as Array<{ type: string; amount: number }>)[1]!.amount).toBeGreaterThanOrEqual(
      Math.ceil(("word ".length * 5) / 4),
    );
  }, 15_000);
});

describe("a page fetch in a cancelled attempt", () => {
  it("hangs up at once and ends cancelled; while it waits, it heartbeats (how Temporal tells it)", async () => {
    const page = await endlessPage();
    installActivityRuntime({
      edge: new EdgeClient("http://127.0.0.1:9", "test-only-secret", () => undefined, 1_000, 5),
      prices: {},
      llm: {},
      httpRequestCost: 0,
      // The fetch's own deadline is far off: only the cancellation can end it within the test.
      outbound: { ...policyFromEnv({ OUTBOUND_HTTP_ALLOW: "127.0.0.1" }), timeoutMs: 60_000 },
      deliveryWaitMs: 200,
    } as unknown as ActivityRuntime);
    const env = new MockActivityEnvironment();
    let heartbeats = 0;
    env.on("heartbeat", () => heartbeats++);
    const outcome = env
      .run(() => fetchPageText(page.url))
      .then(
        () => "fetched",
        (err: unknown) => err,
      );
    expect(await until(() => page.state.chunks >= 5, 5_000)).toBe(true);
    env.cancel();
    expect(await until(() => page.state.closed, 2_000)).toBe(true);
    expect(await outcome).toBeInstanceOf(CancelledFailure);
    expect(heartbeats).toBeGreaterThan(0);
  }, 15_000);
});
