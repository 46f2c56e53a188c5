/**
 * takeStreamLease() on its own, over a recording RateLimiter binding: what it asks the key's
 * object, and that a stream's place is given back whatever became of the call that took it. The
 * counting itself is the RateLimiter's (test/edge/rate-limit.test.ts), the routes' in
 * test/edge/history-stream.test.ts.
 */
import { Hono } from "hono";
import { describe, expect, it } from "vitest";
import type { AppEnv, AuthContext } from "../app-env.ts";
import { handleError } from "../errors.ts";
import { takeStreamLease } from "./stream-lease.ts";

interface Recorded {
  calls: string[];
  waited: Promise<unknown>[];
}

/** A RATE_LIMITER binding whose objects record their calls; `openFails` makes every open reject, as a lost call does. */
function recordingLimiter(recorded: Recorded, openFails: boolean) {
  return {
    idFromName: (name: string) => name,
    get: (owner: string) => ({
      openStream: async (_leaseId: string, max: number, capped: boolean) => {
        recorded.calls.push(`open ${owner} max=${max} capped=${capped}`);
        if (openFails) throw new Error("Network connection lost.");
        return { allowed: true, open: 1, max };
      },
      renewStream: async () => recorded.calls.push(`renew ${owner}`),
      closeStream: async () => recorded.calls.push(`close ${owner}`),
    }),
  };
}

async function openAndRelease(auth: AuthContext, vars: Record<string, string>, capped: boolean, openFails = false) {
  const recorded: Recorded = { calls: [], waited: [] };
  const app = new Hono<AppEnv>();
  app.onError(handleError);
  app.get("/stream", async (c) => {
    c.set("auth", auth);
    const lease = await takeStreamLease(c, { capped });
    lease?.release();
    lease?.release(); // once only
    return c.text(lease ? "leased" : "none");
  });
  const env = { ...vars, RATE_LIMITER: recordingLimiter(recorded, openFails) } as unknown as Env;
  const executionCtx = { waitUntil: (p: Promise<unknown>) => recorded.waited.push(p), passThroughOnException() {}, props: {} };
  const res = await app.request("/stream", {}, env, executionCtx as unknown as ExecutionContext);
  await Promise.all(recorded.waited);
  return { status: res.status, text: await res.text(), calls: recorded.calls };
}

const apiKey: AuthContext = { organizationId: "org_1", apiKeyId: "key_1", scopes: ["*"] };

describe("takeStreamLease", () => {
  it("happy: takes the place from the key's own object and gives it back once", async () => {
    expect(await openAndRelease(apiKey, {}, true)).toEqual({
      status: 200,
      text: "leased",
      calls: ["open key_1 max=20000 capped=true", "close key_1"],
    });
  });

  it("a stream token's stream counts against the key that minted it, not the run its requests are rate limited by", async () => {
    const token = {
      organizationId: "org_1",
      apiKeyId: null,
      scopes: ["read"],
      rateLimitKey: "stream:wf_1",
      streamToken: { apiKeyId: "key_9" },
    } as unknown as AuthContext;
    expect((await openAndRelease(token, {}, true)).calls[0]).toBe("open key_9 max=20000 capped=true");
  });

  it("error: an uncapped open that failed is still closed (its answer may be what was lost), and the stream goes on", async () => {
    expect(await openAndRelease(apiKey, {}, false, true)).toEqual({
      status: 200,
      text: "leased",
      calls: ["open key_1 max=20000 capped=false", "close key_1"],
    });
  });

  it("error: MAX_OPEN_STREAMS_PER_KEY of 0.5 is one stream, not a refusal of every stream", async () => {
    expect((await openAndRelease(apiKey, { MAX_OPEN_STREAMS_PER_KEY: "0.5" }, true)).calls[0]).toBe("open key_1 max=1 capped=true");
  });
});
