/**
 * A model call whose attempt is cancelled (its run cancelled or terminated, the worker shutting
 * down) stops the provider's generation at once: providers bill by the token, and nobody reads the
 * rest. The activity runs in @temporalio/testing's MockActivityEnvironment, against a stand-in
 * provider that streams one chunk every 50 ms for as long as the client listens.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { CancelledFailure } from "@temporalio/activity";
import { MockActivityEnvironment } from "@temporalio/testing";
import { afterEach, describe, expect, it } from "vitest";
import { askModel } from "../../host/activities/llm.ts";
import { type ActivityRuntime, installActivityRuntime } from "../../host/activities/runtime.ts";
import { EdgeClient } from "../../host/edge-client.ts";

let server: Server | undefined;
afterEach(async () => {
  server?.closeAllConnections();
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = undefined;
});

/** An OpenAI-compatible chat completions stream that never ends on its own; `closed` once the client hangs up. */
async function endlessProvider() {
  const state = { chunks: 0, closed: false };
  server = createServer((req, res) => {
    res.writeHead(200, { "content-type": "text/event-stream" });
    const chunk = () =>
      `data: ${JSON.stringify({
        id: "c1",
        object: "chat.completion.chunk",
        created: 0,
        model: "writer",
        choices: [{ index: 0, delta: { content: "word " }, finish_reason: null }],
      })}\n\n`;
    const timer = setInterval(() => {
      state.chunks++;
      res.write(chunk());
    }, 50);
    res.on("close", () => {
      clearInterval(timer);
      state.closed = true;
    });
    req.resume();
  });
  await new Promise<void>((r) => server!.listen(0, "127.0.0.1", r));
  return { baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`, state };
}

const until = async (check: () => boolean, ms: number) => {
  for (const end = Date.now() + ms; Date.now() < end; ) {
    if (check()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return check();
};

describe("a model call in a cancelled attempt", () => {
  it("stops the provider's stream at once and ends cancelled; while it streams, it heartbeats (how Temporal tells it)", async () => {
    const provider = await endlessProvider();
    installActivityRuntime({
      // Nowhere: the step's events are given up after deliveryWaitMs.
      edge: new EdgeClient("http://127.0.0.1:9", "test-only-secret", () => undefined, 1_000, 5),
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
  }, 15_000);
});
