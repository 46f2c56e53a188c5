/**
 * The connection every stream route holds to its run's DO (src/sse/run-subscription.ts), with
 * WebSocket pairs standing in for the DO's end: when the DO goes away the Worker subscribes again,
 * and a client that leaves meanwhile leaves no subscription behind (it would hold one of the run's
 * RUN_STREAM_MAX_SUBSCRIBERS slots until the run ends).
 */
import type { Context } from "hono";
import { describe, expect, it } from "vitest";
import { subscriptionResponse } from "../../src/sse/run-subscription.ts";
import { until } from "../support/until.ts";

/** A subscription: the Worker's end (returned to the code under test) and the DO's end, with its close seen. */
function pair() {
  const [worker, durableObject] = Object.values(new WebSocketPair());
  worker!.accept();
  durableObject!.accept();
  const closed = new Promise<void>((resolve) => durableObject!.addEventListener("close", () => resolve()));
  return { worker: worker!, durableObject: durableObject!, closed };
}

describe("a stream's subscription to its run's DO", () => {
  it("a client that leaves while the Worker subscribes again after the DO went away: the new subscription is closed at once", async () => {
    const first = pair();
    const second = pair();
    let resubscribe!: () => void;
    const resubscribed = new Promise<void>((r) => (resubscribe = r));
    let calls = 0;
    const client = new AbortController();
    // No auth: a stream opened without an API key has no key to check again.
    const c = {
      req: { raw: new Request("http://edge.test/stream", { signal: client.signal }) },
      get: () => undefined,
    } as unknown as Context;
    const res = await subscriptionResponse(c, {
      subscribe: async () => {
        calls++;
        if (calls === 1) return first.worker;
        // The second subscription is answered only after the client has left.
        await resubscribed;
        return second.worker;
      },
      cursor: 0,
      keepAliveMs: 60_000,
      keepAlive: () => ": keep-alive\n\n",
      frame: () => ({ text: "" }),
      onLost: () => "event: lost\ndata: {}\n\n",
      onRevoked: () => "event: revoked\ndata: {}\n\n",
    });
    expect(res.status).toBe(200);
    first.durableObject.close(1012, "the DO was reset");
    // Past the first reconnect delay, the Worker subscribes again.
    expect(await until(() => calls === 2, 5_000)).toBe(true);
    client.abort();
    resubscribe();
    const closedInTime = await Promise.race([second.closed.then(() => true), new Promise((r) => setTimeout(() => r(false), 2_000))]);
    expect(closedInTime).toBe(true);
    await res.body?.cancel();
  });
});
