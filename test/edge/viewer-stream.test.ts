/** GET /runs/:workflowId/events (the run viewer's stream) and the viewer page's headers, driven by pushed events (no host). */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { SignJWT } from "jose";
import { clearApiKeyCache } from "../../src/middleware/api-key-auth/index.ts";
import { STREAM_TOKEN_RENEW_MS, tokenRenewal } from "../../src/sse/token-renewal.ts";
import { readSse } from "../support/sse.ts";
import { RATE_LIMIT_WINDOW_SECONDS } from "../../src/shared/rate-limit-window.ts";
import { mintStreamToken, STREAM_TOKEN_CHAIN_MAX_SECONDS, streamTokenRateLimitKey, verifyStreamToken } from "../../src/stream-tokens.ts";
import { call, createKey, seedCatalog, seedOrganization } from "./helpers.ts";
import type { RunStream } from "../../durable-objects/run-stream.ts";
import { runStream } from "../../src/run-stream-client.ts";
import {
  allFrames,
  closeEvent,
  continuedAsNewEvents,
  createRunningRun,
  expectExactResume,
  finishedEvent,
  historyEvent,
  httpAttributeEvent,
  push,
  thinkingEvent,
} from "./stream-helpers.ts";

const STREAM_SECRET = "edge-test-stream-token-secret-long-enough-for-hs256";

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
    const { token } = await mintStreamToken(STREAM_SECRET, { organizationId: org.organizationId, apiKeyId: org.keyId, workflowId });
    const open = (lastEventId?: string) =>
      call(`/runs/${workflowId}/events?token=${token}`, { headers: lastEventId ? { "last-event-id": lastEventId } : {} });
    const { frames, resumes } = await expectExactResume(open, ["done", "token"]);
    expect(frames.filter((f) => f.id).map((f) => f.event)).toEqual(["run", "step", "thinking", "attribute", "thinking", "step", "run"]);
    expect(resumes).toBe(7);
  });

  it("steps, thinking and usage the host's journal redelivers after the run's end: a client that has the end gets 204, never a second done; from before the end, done once and last", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, [historyEvent(runId, 1), stepEvent(runId, "started"), closeEvent(runId, 2), finishedEvent(runId)]);
    const { token } = await mintStreamToken(STREAM_SECRET, { organizationId: org.organizationId, apiKeyId: org.keyId, workflowId });
    const open = (lastEventId?: string) =>
      call(`/runs/${workflowId}/events?token=${token}`, { headers: lastEventId ? { "last-event-id": lastEventId } : {} });
    const shown = (frames: Awaited<ReturnType<typeof allFrames>>) => frames.filter((f) => f.event !== "token");
    const first = shown(await allFrames(await open()));
    expect(first.map((f) => f.event)).toEqual(["run", "step", "run", "done"]);
    const [, startedId, endId] = first.map((f) => f.id);
    // After an outage the journal delivers what the step published, once the run's end is logged.
    await push(workflowId, [stepEvent(runId, "completed"), thinkingEvent(runId, 1, "late"), httpAttributeEvent(runId, 1)]);
    // An EventSource that got `done` reconnects with the id of the run's end (done has none): 204 stops it.
    expect((await open(endId)).status).toBe(204);
    // One that lost the stream before the end gets the rest, late entries or not, and done once, last.
    const rest = shown(await allFrames(await open(startedId)));
    expect(rest[0]).toMatchObject({ event: "run", id: endId });
    expect(rest.filter((f) => f.event === "done")).toHaveLength(1);
    expect(rest.at(-1)!.event).toBe("done");
    expect((await open(rest.filter((f) => f.id).at(-1)!.id)).status).toBe(204);
  });

  it("a page resuming inside a run that has since continued as new gets the rest of that run and its end, not the next run's entries", async () => {
    const { workflowId, runId: first } = await createRunningRun(org.organizationId);
    const next = crypto.randomUUID();
    await push(workflowId, [thinkingEvent(first, 1, "first run")]);
    const log = () =>
      runInDurableObject(runStream(env, workflowId), (instance: RunStream) => instance.events()) as Promise<
        Array<{ seq: number; type: string; data: { runId?: string } }>
      >;
    const cursor = (await log()).find((e) => e.type === "thinking")!.seq;
    await push(workflowId, continuedAsNewEvents(first, 2, next));
    await push(workflowId, [
      { sourceKey: `run:${next}:started`, type: "run.started", at: new Date().toISOString(), data: { runId: next } },
      thinkingEvent(next, 1, "second run"),
    ]);
    const { token } = await mintStreamToken(STREAM_SECRET, { organizationId: org.organizationId, apiKeyId: org.keyId, workflowId });
    const open = (lastEventId: number) =>
      call(`/runs/${workflowId}/events?token=${token}`, { headers: { "last-event-id": String(lastEventId) } });

    const rest = (await allFrames(await open(cursor))).filter((f) => f.event !== "token");
    expect(rest.map((f) => f.event)).toEqual(["run", "done"]);
    expect(JSON.parse(rest[0]!.data)).toMatchObject({ state: "finished", runId: first, status: "continued_as_new", newRunId: next });
    expect(JSON.parse(rest[1]!.data)).toMatchObject({ status: "continued_as_new" });
    // A page that has all of the first run follows the run the workflow is on now, from its start,
    // as a page opened now would (a reset's new run too: stream-home-region-calls.test.ts).
    const end = (await log()).find((e) => e.type === "run.finished" && e.data.runId === first)!.seq;
    const following = await open(end);
    expect(following.status).toBe(200);
    const frames: Array<{ event: string; data: string }> = [];
    for await (const m of readSse(following.body!)) {
      if (m.event !== "token") frames.push({ event: m.event, data: m.data });
      if (frames.length === 2) break;
    }
    expect(frames.map((f) => [f.event, JSON.parse(f.data).runId])).toEqual([
      ["run", next],
      ["thinking", undefined],
    ]);
    expect(JSON.parse(frames[1]!.data).text).toBe("second run");
  });

  it("a repeated ?token= or ?lastEventId= is 400 naming it (security: never the first value in silence)", async () => {
    const { workflowId } = await createRunningRun(org.organizationId);
    const { token } = await mintStreamToken(STREAM_SECRET, { organizationId: org.organizationId, apiKeyId: org.keyId, workflowId });
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

describe("stream tokens: renewed on an open stream", () => {
  let org: Awaited<ReturnType<typeof seedOrganization>>;
  beforeAll(async () => {
    org = await seedOrganization();
    await seedCatalog();
  });

  /** The first frames of a stream, up to and including its `token` event (or the first entry, when it has none). */
  async function openingFrames(res: Response) {
    const frames: Array<{ event: string; data: string }> = [];
    for await (const m of readSse(res.body!)) {
      frames.push({ event: m.event, data: m.data });
      if (m.event === "token" || m.event === "run" || m.event === "history") break;
    }
    await res.body?.cancel().catch(() => {});
    return frames;
  }

  it("a stream opened with a token sends a fresh one for the same run, which outlives it and opens the stream; only for that run", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    const other = await createRunningRun(org.organizationId);
    await push(workflowId, [historyEvent(runId, 1)]);
    const { key, keyId } = await createKey(org.organizationId);
    // Minted ten minutes ago: five minutes of life left.
    const mintedAt = Date.now() - 10 * 60_000;
    const old = await mintStreamToken(STREAM_SECRET, { organizationId: org.organizationId, workflowId, apiKeyId: keyId }, mintedAt);
    for (const path of [`/runs/${workflowId}/events`, `/workflow/${workflowId}/history/stream`]) {
      const frames = await openingFrames(await call(`${path}?token=${old.token}`));
      const fresh = JSON.parse(frames.find((f) => f.event === "token")!.data) as { token: string; expiresAt: string };
      expect(Date.parse(fresh.expiresAt), path).toBeGreaterThan(Date.parse(old.expiresAt) + 9 * 60_000);
      // Same run, same key, and the chain's start of the token it renews (so the chain stays bounded).
      expect((await verifyStreamToken(STREAM_SECRET, fresh.token))!).toEqual({
        organizationId: org.organizationId,
        workflowId,
        apiKeyId: keyId,
        chainStartedAt: Math.floor(mintedAt / 1000),
      });
      const reopened = await call(`/runs/${workflowId}/events?token=${fresh.token}`);
      expect(reopened.status, path).toBe(200);
      await reopened.body?.cancel();
      expect((await call(`/runs/${other.workflowId}/events?token=${fresh.token}`)).status, path).toBe(401);
    }
    // A stream opened with an API key gets no token: it has no use for one.
    const withKey = await openingFrames(
      await call(`/workflow/${workflowId}/history/stream`, { headers: { authorization: `Bearer ${key}` } }),
    );
    expect(withKey.map((f) => f.event)).not.toContain("token");
  });

  it("security: renewals do not outlive their chain: a day after the API key minted the first token, none opens a stream or gets renewed", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, [historyEvent(runId, 1)]);
    const nowSeconds = Math.floor(Date.now() / 1000);
    const claims = { organizationId: org.organizationId, workflowId, apiKeyId: org.keyId };
    // A chain with a minute left: the renewal it gets ends with the chain, not 15 minutes on.
    const lastMinute = await mintStreamToken(STREAM_SECRET, {
      ...claims,
      chainStartedAt: nowSeconds - STREAM_TOKEN_CHAIN_MAX_SECONDS + 60,
    });
    const frames = await openingFrames(await call(`/runs/${workflowId}/events?token=${lastMinute.token}`));
    const renewed = JSON.parse(frames.find((f) => f.event === "token")!.data) as { token: string; expiresAt: string };
    expect(Date.parse(renewed.expiresAt)).toBeLessThanOrEqual((nowSeconds + 61) * 1000);
    // A token whose chain is over, even with time left on its own clock (as a forged-ahead clock might give it), is refused.
    const overdue = await new SignJWT({ org: org.organizationId, key: org.keyId, chain: nowSeconds - STREAM_TOKEN_CHAIN_MAX_SECONDS - 10 })
      .setProtectedHeader({ alg: "HS256" })
      .setIssuer("outrider")
      .setAudience("outrider:run-stream")
      .setSubject(workflowId)
      .setIssuedAt()
      .setExpirationTime("10m")
      .sign(new TextEncoder().encode(STREAM_SECRET));
    for (const path of [`/runs/${workflowId}/events`, `/workflow/${workflowId}/history/stream`]) {
      const res = await call(`${path}?token=${overdue}`);
      expect(res.status, path).toBe(401);
      await res.body?.cancel();
    }
  });
  it("security: a renewed token stops working with the key that minted the first", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, [historyEvent(runId, 1)]);
    const { keyId } = await createKey(org.organizationId);
    const first = await mintStreamToken(STREAM_SECRET, { organizationId: org.organizationId, workflowId, apiKeyId: keyId });
    const frames = await openingFrames(await call(`/runs/${workflowId}/events?token=${first.token}`));
    const fresh = JSON.parse(frames.find((f) => f.event === "token")!.data) as { token: string };
    await env.DB.prepare("UPDATE api_keys SET revoked_at = ? WHERE id = ?").bind(new Date().toISOString(), keyId).run();
    clearApiKeyCache();
    expect((await call(`/runs/${workflowId}/events?token=${fresh.token}`)).status).toBe(401);
  });

  it("on an open stream, a fresh token follows a keep-alive once a third of a token's life has passed, and not before", async () => {
    let now = Date.now();
    const clock = vi.spyOn(Date, "now").mockImplementation(() => now);
    try {
      const renewal = await tokenRenewal(env, {
        organizationId: org.organizationId,
        apiKeyId: null,
        scopes: [],
        streamToken: { organizationId: org.organizationId, workflowId: "w-1", apiKeyId: org.keyId },
      });
      expect(renewal.first).toContain("event: token");
      const keepAlive = renewal.keepAlive(() => ": keep-alive\n\n");
      expect(keepAlive()).toBe(": keep-alive\n\n");
      now += STREAM_TOKEN_RENEW_MS - 1;
      expect(keepAlive()).toBe(": keep-alive\n\n");
      now += 1;
      // Due: minted on this tick, sent on the next.
      expect(keepAlive()).toBe(": keep-alive\n\n");
      await new Promise((r) => setTimeout(r, 10));
      const next = keepAlive();
      expect(next).toMatch(/^: keep-alive\n\nevent: token\ndata: \{"token":"[^"]+","expiresAt":"[^"]+"\}\n\n$/);
      expect(keepAlive()).toBe(": keep-alive\n\n");
      // A stream opened with an API key: the keep-alive as it is.
      const none = await tokenRenewal(env, { organizationId: org.organizationId, apiKeyId: "k", scopes: ["*"] });
      expect(none.first).toBe("");
      const plain = () => ": keep-alive\n\n";
      expect(none.keepAlive(plain)).toBe(plain);
    } finally {
      clock.mockRestore();
    }
  });
});

describe("stream tokens: rate limits (security)", () => {
  let org: Awaited<ReturnType<typeof seedOrganization>>;
  beforeAll(async () => {
    org = await seedOrganization();
    await seedCatalog();
  });

  it("a stream token's requests count against its run, on the viewer's stream and the history stream alike; the limit used up is 429", async () => {
    const workflowId = `hello-${crypto.randomUUID()}`; // never started: each connect is a quick 404
    const { token } = await mintStreamToken(STREAM_SECRET, { organizationId: org.organizationId, apiKeyId: org.keyId, workflowId });
    const viewer = await call(`/runs/${workflowId}/events?token=${token}`);
    expect(viewer.status).toBe(404);
    expect(viewer.headers.get("x-ratelimit-limit")).toBe(env.RATE_LIMIT_PER_MINUTE);
    const before = Number(viewer.headers.get("x-ratelimit-remaining"));
    const history = await call(`/workflow/${workflowId}/history/stream?token=${token}`);
    expect(history.status).toBe(404);
    expect(Number(history.headers.get("x-ratelimit-remaining"))).toBe(before - 1);

    // Use up the run's limit.
    const limiter = env.RATE_LIMITER.get(
      env.RATE_LIMITER.idFromName(streamTokenRateLimitKey({ organizationId: org.organizationId, workflowId })),
    );
    const used = await runInDurableObject(limiter, (instance) => {
      let admitted = 0;
      while (instance.hit(Number(env.RATE_LIMIT_PER_MINUTE), RATE_LIMIT_WINDOW_SECONDS).allowed) admitted++;
      return admitted;
    });
    expect(used).toBe(Number(env.RATE_LIMIT_PER_MINUTE) - 2);
    for (const path of [`/runs/${workflowId}/events?token=${token}`, `/workflow/${workflowId}/history/stream?token=${token}`]) {
      const refused = await call(path);
      expect(refused.status, path).toBe(429);
      expect(Number(refused.headers.get("retry-after")), path).toBeGreaterThan(0);
    }
    // The organization's API key is not charged for its tokens.
    expect((await call(`/workflow/${workflowId}/history/stream`, { headers: { authorization: `Bearer ${org.key}` } })).status).toBe(404);
  });
});
