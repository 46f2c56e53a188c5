/** GET /runs/:workflowId/events (the run viewer's stream) and the viewer page's headers, driven by pushed events (no host). */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { RATE_LIMIT_WINDOW_SECONDS } from "../../src/middleware/rate-limit/index.ts";
import { mintStreamToken, streamTokenRateLimitKey } from "../../src/stream-tokens.ts";
import { call, seedCatalog, seedOrganization } from "./helpers.ts";
import {
  closeEvent,
  createRunningRun,
  expectExactResume,
  finishedEvent,
  historyEvent,
  httpAttributeEvent,
  push,
  thinkingEvent,
} from "./stream-helpers.ts";

const STREAM_SECRET = "edge-test-stream-token-secret";

const stepEvent = (runId: string, state: "started" | "completed") => ({
  sourceKey: `step:${runId}:5:1:${state}`,
  type: "step",
  at: new Date().toISOString(),
  data: { runId, activityId: "5", stepName: "askModel", attempt: 1, state },
});

describe("run viewer stream: resume (security: exact replay, no duplicates)", () => {
  let org: Awaited<ReturnType<typeof seedOrganization>>;
  beforeAll(async () => {
    org = await seedOrganization();
    await seedCatalog();
  });

  it("every run, step, thinking and attribute frame has an id, and Last-Event-ID resumes exactly after it", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, [
      historyEvent(runId, 1),
      stepEvent(runId, "started"),
      thinkingEvent(runId, 1, "Reading "),
      httpAttributeEvent(runId, 1),
    ]);
    await push(workflowId, [
      thinkingEvent(runId, 2, "done reading."),
      stepEvent(runId, "completed"),
      closeEvent(runId, 2),
      finishedEvent(runId),
    ]);
    const { token } = await mintStreamToken(STREAM_SECRET, { organizationId: org.organizationId, workflowId });
    const open = (lastEventId?: string) =>
      call(`/runs/${workflowId}/events?token=${token}`, { headers: lastEventId ? { "last-event-id": lastEventId } : {} });
    const { frames, resumes } = await expectExactResume(open, ["done"]);
    expect(frames.filter((f) => f.id).map((f) => f.event)).toEqual(["run", "step", "thinking", "attribute", "thinking", "step", "run"]);
    expect(resumes).toBe(7);
  });

  it("a repeated ?token= or ?lastEventId= is 400 naming it (security: never the first value in silence)", async () => {
    const { workflowId } = await createRunningRun(org.organizationId);
    const { token } = await mintStreamToken(STREAM_SECRET, { organizationId: org.organizationId, workflowId });
    for (const [query, path] of [
      [`token=${token}&token=${token}`, "token"],
      [`token=${token}&lastEventId=1&lastEventId=2`, "lastEventId"],
    ]) {
      const res = await call(`/runs/${workflowId}/events?${query}`);
      expect(res.status, path).toBe(400);
      const { error } = (await res.json()) as { error: { code: string; issues: { path: string }[] } };
      expect(error.code, path).toBe("invalid_request");
      expect(
        error.issues.map((i) => i.path),
        path,
      ).toEqual([path]);
    }
  });
});

describe("stream tokens: rate limits (security)", () => {
  let org: Awaited<ReturnType<typeof seedOrganization>>;
  beforeAll(async () => {
    org = await seedOrganization();
    await seedCatalog();
  });

  it("a stream token's requests count against its run, on the viewer's stream and the history stream alike; a full window is 429", async () => {
    const workflowId = `hello-${crypto.randomUUID()}`; // never started: each connect is a quick 404
    const { token } = await mintStreamToken(STREAM_SECRET, { organizationId: org.organizationId, workflowId });
    const viewer = await call(`/runs/${workflowId}/events?token=${token}`);
    expect(viewer.status).toBe(404);
    expect(viewer.headers.get("x-ratelimit-limit")).toBe(env.RATE_LIMIT_PER_MINUTE);
    const before = Number(viewer.headers.get("x-ratelimit-remaining"));
    const history = await call(`/workflow/${workflowId}/history/stream?token=${token}`);
    expect(history.status).toBe(404);
    expect(Number(history.headers.get("x-ratelimit-remaining"))).toBe(before - 1);

    // Use up the run's window (not at the very end of a minute, or the window would turn over).
    const windowMs = RATE_LIMIT_WINDOW_SECONDS * 1000;
    if (windowMs - (Date.now() % windowMs) < 3_000) await new Promise((r) => setTimeout(r, 3_000));
    const limiter = env.RATE_LIMITER.get(
      env.RATE_LIMITER.idFromName(streamTokenRateLimitKey({ organizationId: org.organizationId, workflowId })),
    );
    await runInDurableObject(limiter, (_instance, state) => {
      state.storage.kv.put("window", {
        windowStart: Math.floor(Date.now() / windowMs) * windowMs,
        count: Number(env.RATE_LIMIT_PER_MINUTE),
      });
    });
    for (const path of [`/runs/${workflowId}/events?token=${token}`, `/workflow/${workflowId}/history/stream?token=${token}`]) {
      const refused = await call(path);
      expect(refused.status, path).toBe(429);
      expect(Number(refused.headers.get("retry-after")), path).toBeGreaterThan(0);
    }
    // The organization's API key is not charged for its tokens.
    expect((await call(`/workflow/${workflowId}/history/stream`, { headers: { authorization: `Bearer ${org.key}` } })).status).toBe(404);
  });
});
