import { createExecutionContext, runDurableObjectAlarm, runInDurableObject, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { SignJWT } from "jose";
import { beforeAll, describe, expect, it, vi } from "vitest";
import app from "../../src/index.ts";
import { mintStreamToken } from "../../src/stream-tokens.ts";
import { aroundDurableObjectCalls } from "./durable-object-calls.ts";
import { STREAM_LEASE_TTL_MS } from "../../durable-objects/rate-limiter/stream-leases.ts";
import type { RateLimitDecision } from "../../durable-objects/rate-limiter.ts";
import { call, createKey, type OutputErrorBody, seedCatalog, seedOrganization } from "./helpers.ts";
import { closeEvent, createRunningRun, finishedEvent, historyEvent, push } from "./stream-helpers.ts";

async function keyWithLimit(limit: number, org?: { organizationId: string }): Promise<string> {
  const { key, keyId } = await createKey((org ?? (await seedOrganization())).organizationId);
  await env.DB.prepare("UPDATE api_keys SET rate_limit_per_minute = ? WHERE id = ?").bind(limit, keyId).run();
  return key;
}

/** A RateLimiter of its own for a test that calls it directly. */
const limiter = () => env.RATE_LIMITER.get(env.RATE_LIMITER.idFromName(`test:${crypto.randomUUID()}`));

describe("per-key rate limits", () => {
  beforeAll(async () => {
    await seedCatalog();
  });

  it("25 concurrent calls on a key limited to 5 a minute: exactly 5 get through, 20 get 429 with Retry-After", async () => {
    const key = await keyWithLimit(5);
    const responses = await Promise.all(
      Array.from({ length: 25 }, () => call("/workflow/catalog", { headers: { authorization: `Bearer ${key}` } })),
    );
    const ok = responses.filter((r) => r.status === 200);
    const limited = responses.filter((r) => r.status === 429);
    expect(ok).toHaveLength(5);
    expect(limited).toHaveLength(20);
    for (const res of limited) {
      expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
      expect(res.headers.get("x-ratelimit-remaining")).toBe("0");
      expect(((await res.json()) as OutputErrorBody).code).toBe("rate_limited");
    }
    expect(ok.map((r) => Number(r.headers.get("x-ratelimit-remaining"))).sort()).toEqual([0, 1, 2, 3, 4]);
  });

  it("every authenticated response carries the headers, error responses included", async () => {
    const key = await keyWithLimit(100);
    for (const res of [
      await call("/workflow/catalog", { headers: { authorization: `Bearer ${key}` } }),
      await call(`/workflow/hello-${crypto.randomUUID()}/status`, { headers: { authorization: `Bearer ${key}` } }),
    ]) {
      expect(res.headers.get("x-ratelimit-limit")).toBe("100");
      expect(Number(res.headers.get("x-ratelimit-remaining"))).toBeLessThan(100);
      expect(Number(res.headers.get("x-ratelimit-reset"))).toBeGreaterThan(Date.now() / 1000);
    }
  });

  it("keys are limited separately, and the default comes from RATE_LIMIT_PER_MINUTE", async () => {
    const limited = await keyWithLimit(1);
    const org = await seedOrganization();
    const first = await call("/workflow/catalog", { headers: { authorization: `Bearer ${limited}` } });
    expect(first.status).toBe(200);
    const asked = Math.floor(Date.now() / 1000);
    const refused = await call("/workflow/catalog", { headers: { authorization: `Bearer ${limited}` } });
    expect(refused.status).toBe(429);
    // The one request counts for 60 to 61 s: Retry-After is when it is released, and so is the reset (the whole limit back).
    const reset = Number(refused.headers.get("x-ratelimit-reset"));
    expect(reset - Date.now() / 1000).toBeGreaterThan(50);
    expect(reset - asked).toBeLessThanOrEqual(61);
    // Counted from the second the refusal was decided in.
    expect(reset - Number(refused.headers.get("retry-after"))).toBeGreaterThanOrEqual(asked);
    expect(reset - Number(refused.headers.get("retry-after"))).toBeLessThanOrEqual(Math.floor(Date.now() / 1000));
    expect(first.headers.get("x-ratelimit-reset")).toBe(refused.headers.get("x-ratelimit-reset"));
    const other = await call("/workflow/catalog", { headers: { authorization: `Bearer ${org.key}` } });
    expect(other.status).toBe(200);
    expect(other.headers.get("x-ratelimit-limit")).toBe(env.RATE_LIMIT_PER_MINUTE);
  });

  it("while a deploy rolls out, a RateLimiter still on the fixed-window code (no retryAfter) gets a Retry-After from its window's end", async () => {
    const key = await keyWithLimit(1);
    expect((await call("/workflow/catalog", { headers: { authorization: `Bearer ${key}` } })).status).toBe(200);
    const windowEnd = Math.floor(Date.now() / 1000) + 30;
    const RATE_LIMITER = aroundDurableObjectCalls(env.RATE_LIMITER, async (_method, call) => {
      const { retryAfter: _, ...decision } = (await call()) as RateLimitDecision;
      return { ...decision, resetAt: windowEnd };
    });
    const refused = await app.fetch(
      new Request("http://edge.test/workflow/catalog", { headers: { authorization: `Bearer ${key}` } }),
      { ...env, RATE_LIMITER },
      createExecutionContext(),
    );
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThanOrEqual(windowEnd - Math.floor(Date.now() / 1000));
    expect(Number(refused.headers.get("retry-after"))).toBeLessThanOrEqual(30);
  });

  it("a RATE_LIMIT_PER_MINUTE that is a fraction counts whole requests; a negative or unreadable one is the default, not a refusal of all", async () => {
    const org = await seedOrganization();
    const catalogWith = (perMinute: string) =>
      app.fetch(
        new Request("http://edge.test/workflow/catalog", { headers: { authorization: `Bearer ${org.key}` } }),
        { ...env, RATE_LIMIT_PER_MINUTE: perMinute } as Env,
        createExecutionContext(),
      );
    const fraction = await catalogWith("2.5");
    expect([fraction.status, fraction.headers.get("x-ratelimit-limit"), fraction.headers.get("x-ratelimit-remaining")]).toEqual([
      200,
      "2",
      "1",
    ]);
    for (const bad of ["-5", "many"]) {
      const res = await catalogWith(bad);
      expect([res.status, res.headers.get("x-ratelimit-limit")], bad).toEqual([200, "600"]);
    }
  });

  it("security: a stream token is held to the minting key's own limit (a throttled key gets no 600 a minute per run through tokens)", async () => {
    const org = await seedOrganization();
    const key = await keyWithLimit(2, org);
    const { workflowId, runId } = await createRunningRun(org.organizationId, "hello");
    await push(workflowId, [historyEvent(runId, 1), closeEvent(runId, 2), finishedEvent(runId)]);
    const minted = await call(`/workflow/${workflowId}/stream-token`, { method: "POST", headers: { authorization: `Bearer ${key}` } });
    expect(minted.status).toBe(200);
    const { token: streamToken } = (await minted.json()) as { token: string };
    const stream = () => call(`/workflow/${workflowId}/history/stream?token=${encodeURIComponent(streamToken)}`);
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await stream();
      statuses.push(res.status);
      expect(res.headers.get("x-ratelimit-limit")).toBe("2");
      await res.body?.cancel();
    }
    expect(statuses.slice(0, 2).every((s) => s < 400)).toBe(true);
    expect(statuses[2]).toBe(429);
    // A key without a limit of its own: its tokens get the default.
    const free = await seedOrganization();
    const run = await createRunningRun(free.organizationId, "hello");
    const mintedFree = await call(`/workflow/${run.workflowId}/stream-token`, {
      method: "POST",
      headers: { authorization: `Bearer ${free.key}` },
    });
    const { token } = (await mintedFree.json()) as { token: string };
    const res = await call(`/workflow/${run.workflowId}/history/stream?token=${encodeURIComponent(token)}`);
    expect(res.headers.get("x-ratelimit-limit")).toBe(env.RATE_LIMIT_PER_MINUTE);
    await res.body?.cancel();
  });

  it("a key no longer used leaves nothing stored: the alarm deletes its counted requests once all are released", async () => {
    const stub = limiter();
    // Requests made two minutes ago: released a minute ago.
    const decision = await stub.hit(5, 60, Date.now() - 120_000);
    expect(decision).toMatchObject({ allowed: true, remaining: 4 });
    const stored = () =>
      runInDurableObject(stub, async (_instance, state) => ({
        hits: state.storage.kv.get("hits"),
        alarm: await state.storage.getAlarm(),
      }));
    expect((await stored()).hits).toBeDefined();
    expect((await stored()).alarm).not.toBeNull();
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await stored()).toEqual({ hits: undefined, alarm: null });
    // Requests still counted are kept when an earlier alarm fires, and the alarm is set for their release.
    const made = Date.now();
    await stub.hit(5, 60, made);
    await runInDurableObject(stub, (_instance, state) => state.storage.setAlarm(Date.now()));
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await stored()).toEqual({
      hits: [[Math.floor(made / 1000) * 1000 + 61_000, 1]],
      alarm: Math.floor(made / 1000) * 1000 + 61_000,
    });
  });

  describe("no 60 s span admits more than the limit (a window that slides)", () => {
    /** A minute's turn well ahead of the clock, so that no alarm of the object fires meanwhile. */
    const minuteAhead = () => Math.ceil(Date.now() / 60_000) * 60_000 + 10 * 60_000;

    it("a key's whole limit spent in the last second before a minute turns gets nothing more in the first second after (fixed windows let twice the limit through)", async () => {
      const stub = limiter();
      const turn = minuteAhead();
      const admitted: number[] = [];
      for (const at of [turn - 500, turn + 500]) for (let i = 0; i < 5; i++) if ((await stub.hit(5, 60, at)).allowed) admitted.push(at);
      expect(admitted).toEqual(Array(5).fill(turn - 500));
    });

    it("over ten minutes of irregular traffic no 60 s span holds more than the limit, and a request is refused only when 60 s (61 at most) hold the limit", async () => {
      const stub = limiter();
      const start = minuteAhead();
      // A fixed pseudo-random walk: bursts of up to 6 requests, 0 to 5 s apart.
      let seed = 7;
      const next = (n: number) => {
        seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
        return seed % n;
      };
      const calls: Array<{ at: number; allowed: boolean }> = [];
      await runInDurableObject(stub, (instance) => {
        for (let at = start; at < start + 600_000; at += next(5_000))
          for (let burst = 1 + next(6); burst > 0; burst--) calls.push({ at, allowed: instance.hit(7, 60, at).allowed });
      });
      const admitted = calls.filter((c) => c.allowed).map((c) => c.at);
      const admittedWithin = (from: number, to: number) => admitted.filter((at) => at > from && at <= to).length;
      expect(calls.filter((c) => !c.allowed).length).toBeGreaterThan(0);
      for (const { at, allowed } of calls) {
        if (allowed) expect(admittedWithin(at - 60_000, at), `60 s up to ${at - start}`).toBeLessThanOrEqual(7);
        else expect(admittedWithin(at - 61_000, at), `refused at ${at - start}`).toBeGreaterThanOrEqual(7);
      }
    });

    it("a fresh key bursts its whole limit; a refusal's retryAfter is when the next request is admitted, resetAt when the whole limit is back", async () => {
      const stub = limiter();
      // 300 ms into a second: hits are counted by the second, each released 60 to 61 s after it was made.
      const second = minuteAhead() + 7_000;
      const t0 = second + 300;
      const burst = [];
      for (let i = 0; i < 3; i++) burst.push(await stub.hit(3, 60, t0));
      const fullAgainAt = (second + 61_000) / 1000;
      expect(burst).toEqual(
        [2, 1, 0].map((remaining) => ({ allowed: true, limit: 3, remaining, resetAt: fullAgainAt, retryAfter: remaining > 0 ? 0 : 61 })),
      );
      const refused = await stub.hit(3, 60, t0 + 20_000);
      expect(refused).toEqual({ allowed: false, limit: 3, remaining: 0, resetAt: fullAgainAt, retryAfter: 41 });
      // A second earlier is still too soon; at Retry-After all three are back, one at a time as asked.
      expect((await stub.hit(3, 60, t0 + 20_000 + 40_000)).allowed).toBe(false);
      const back = t0 + 20_000 + 41_000;
      expect(await stub.hit(3, 60, back)).toMatchObject({ allowed: true, remaining: 2, resetAt: Math.floor(back / 1000) + 61 });

      // Requests spread out come back one by one: the next is admitted when the oldest counted one is released.
      const spread = limiter();
      expect(await spread.hit(2, 60, t0)).toMatchObject({ allowed: true, remaining: 1 });
      expect(await spread.hit(2, 60, t0 + 30_000)).toMatchObject({
        allowed: true,
        remaining: 0,
        resetAt: (second + 30_000 + 61_000) / 1000,
        retryAfter: 31,
      });
      expect(await spread.hit(2, 60, t0 + 40_000)).toMatchObject({ allowed: false, retryAfter: 21, resetAt: (second + 91_000) / 1000 });
      expect(await spread.hit(2, 60, t0 + 61_000)).toMatchObject({ allowed: true, remaining: 0, retryAfter: 30 });
      expect(await spread.hit(2, 60, t0 + 61_000)).toMatchObject({ allowed: false, retryAfter: 30 });
    });

    it("a window stored by the fixed-window code before a deploy counts as that many hits made at the latest moment they can have been", async () => {
      const turn = minuteAhead();
      const withOldWindow = async (windowStart: number, count: number) => {
        const stub = limiter();
        await runInDurableObject(stub, (_instance, state) => {
          state.storage.kv.put("window", { windowStart, windowEnd: windowStart + 60_000, count });
        });
        return stub;
      };
      // A full window still going when first read: its hits count as made then, and the old window is gone.
      const full = await withOldWindow(turn - 60_000, 5);
      expect(await full.hit(5, 60, turn - 10_000)).toMatchObject({ allowed: false, remaining: 0, retryAfter: 61 });
      expect(await runInDurableObject(full, (_instance, state) => state.storage.kv.get("window"))).toBeUndefined();
      expect(await full.hit(5, 60, turn + 50_000)).toMatchObject({ allowed: false, retryAfter: 1 });
      expect(await full.hit(5, 60, turn + 51_000)).toMatchObject({ allowed: true, remaining: 4 });
      // Two hits of a window that ended 30 s ago count as made at its end: for another 30 s.
      const ended = await withOldWindow(turn - 90_000, 2);
      expect(await ended.hit(5, 60, turn)).toMatchObject({ allowed: true, remaining: 2, resetAt: (turn + 61_000) / 1000 });
      expect(await ended.hit(5, 60, turn + 30_000)).toMatchObject({ allowed: true, remaining: 3 });
      // One that ended a minute ago or more is over.
      const over = await withOldWindow(turn - 120_000, 5);
      expect(await over.hit(5, 60, turn)).toMatchObject({ allowed: true, remaining: 4 });
      // An object left with an old window and no request since: its alarm (set by the old code for the window's end) leaves nothing.
      const left = await withOldWindow(Date.now() - 180_000, 5);
      await runInDurableObject(left, (_instance, state) => state.storage.setAlarm(Date.now()));
      expect(await runDurableObjectAlarm(left)).toBe(true);
      expect(
        await runInDurableObject(left, async (_instance, state) => ({
          stored: [...state.storage.kv.list()],
          alarm: await state.storage.getAlarm(),
        })),
      ).toEqual({ stored: [], alarm: null });
    });
  });

  describe("a key's open streams (stream leases)", () => {
    it("holds at most max at once; a lease given back or expired frees its place; renewing keeps one", async () => {
      const stub = limiter();
      const t0 = Date.now();
      expect(await stub.openStream("a", 2, true, t0)).toEqual({ allowed: true, open: 1, max: 2 });
      expect(await stub.openStream("b", 2, true, t0)).toEqual({ allowed: true, open: 2, max: 2 });
      expect(await stub.openStream("c", 2, true, t0)).toEqual({ allowed: false, open: 2, max: 2 });
      // The same lease asked again (a retried call) takes no second place.
      expect(await stub.openStream("a", 2, true, t0)).toMatchObject({ allowed: true, open: 2 });
      await stub.closeStream("a");
      expect(await stub.openStream("c", 2, true, t0)).toMatchObject({ allowed: true, open: 2 });
      // "b" renewed late in its life outlives "c", which was not renewed.
      await stub.renewStream("b", t0 + STREAM_LEASE_TTL_MS - 1);
      const afterC = t0 + STREAM_LEASE_TTL_MS + 1;
      expect(await stub.openStream("d", 2, true, afterC)).toMatchObject({ allowed: true, open: 2 });
      expect(await stub.openStream("e", 2, true, afterC)).toMatchObject({ allowed: false });
    });

    it("a key's first counted request does not put off the sweep of a lease that expires sooner: the alarm stays at the lease's expiry", async () => {
      const stub = limiter();
      // A lease taken long ago and never renewed: it expires in 5 s, and the object's alarm is set for then.
      const expiresAt = Date.now() + 5_000;
      await stub.openStream("stale", 2, true, expiresAt - STREAM_LEASE_TTL_MS);
      const alarm = () => runInDurableObject(stub, (_instance, state) => state.storage.getAlarm());
      expect(await alarm()).toBe(expiresAt);
      // The first request counted is released 60 to 61 s from now: its alarm would come 55 s after the lease's end.
      expect((await stub.hit(5, 60)).allowed).toBe(true);
      expect(await alarm()).toBe(expiresAt);
    });

    /** Answers `request` with the app, recording the methods the Worker calls on RateLimiter stubs. */
    async function withLimiterCalls(request: Request, vars: Partial<Env> = {}) {
      const methods: string[] = [];
      const RATE_LIMITER = aroundDurableObjectCalls(env.RATE_LIMITER, (method, call) => {
        methods.push(method);
        return call();
      });
      const ctx = createExecutionContext();
      const res = await app.fetch(request, { ...env, ...vars, RATE_LIMITER }, ctx);
      return { res, methods, ctx };
    }
    const leasesHeldBy = (owner: string) =>
      runInDurableObject(env.RATE_LIMITER.get(env.RATE_LIMITER.idFromName(owner)), (_instance, state) => [
        ...state.storage.kv.list({ prefix: "stream-lease:" }),
      ]);
    const historyStream = (workflowId: string, headers: Record<string, string> = {}, query = "") =>
      new Request(`http://edge.test/workflow/${workflowId}/history/stream${query}`, { headers });

    it("a stream connect makes one call to its key's RateLimiter: the rate limit's hit takes the stream's place", async () => {
      const own = await seedOrganization();
      const { workflowId, runId } = await createRunningRun(own.organizationId);
      await push(workflowId, [historyEvent(runId, 1)]);
      const byKey = await withLimiterCalls(historyStream(workflowId, { authorization: `Bearer ${own.key}` }));
      expect(byKey.res.status).toBe(200);
      expect(byKey.methods).toEqual(["hitAndOpenStream"]);
      expect(await leasesHeldBy(own.keyId)).toHaveLength(1);
      await byKey.res.body!.cancel();
      await vi.waitFor(async () => expect(await leasesHeldBy(own.keyId)).toEqual([]), { timeout: 5_000, interval: 50 });

      // The Workflow Runs API's stream: a JWT subject's rate limit and streams are one object too.
      const subject = `user-${crypto.randomUUID()}`;
      const jwt = await new SignJWT({ org_id: own.organizationId, sub: subject })
        .setProtectedHeader({ alg: "HS256" })
        .setExpirationTime("5m")
        .sign(new TextEncoder().encode("edge-test-jwt-secret-at-least-32-bytes-long"));
      const uuid = (await env.DB.prepare("SELECT id FROM runs WHERE temporal_workflow_id = ?").bind(workflowId).first<{ id: string }>())!
        .id;
      const bySubject = await withLimiterCalls(
        new Request(`http://edge.test/api/v1/workflow-runs/${uuid}/stream`, { headers: { authorization: `Bearer ${jwt}` } }),
      );
      expect(bySubject.res.status).toBe(200);
      expect(bySubject.methods).toEqual(["hitAndOpenStream"]);
      expect(await leasesHeldBy(`jwt:${own.organizationId}:${subject}`)).toHaveLength(1);
      await bySubject.res.body!.cancel();

      // A stream token's rate limit is its run's and its place the minting key's: two objects, a call to each.
      const { token } = await mintStreamToken("edge-test-stream-token-secret-long-enough-for-hs256", {
        organizationId: own.organizationId,
        apiKeyId: own.keyId,
        workflowId,
      });
      const byToken = await withLimiterCalls(historyStream(workflowId, {}, `?token=${token}`));
      expect(byToken.res.status).toBe(200);
      expect(byToken.methods).toEqual(["hit", "openStream"]);
      await byToken.res.body!.cancel();
    });

    it("a place taken with the hit goes back when the route answers without a stream; a connect over the rate limit takes none", async () => {
      const own = await seedOrganization();
      const { workflowId, runId } = await createRunningRun(own.organizationId);
      await push(workflowId, [historyEvent(runId, 1)]);
      const oneStream = { MAX_OPEN_STREAMS_PER_KEY: "1" };
      const auth = { authorization: `Bearer ${own.key}` };
      for (const [request, status] of [
        [historyStream(`two_steps-${crypto.randomUUID()}`, auth), 404],
        [historyStream(workflowId, { ...auth, "last-event-id": "abc" }), 400],
        [historyStream(workflowId, auth, "?includePayloads=yes"), 400],
      ] as const) {
        const { res, methods, ctx } = await withLimiterCalls(request, oneStream);
        expect(res.status, request.url).toBe(status);
        expect(methods).toEqual(["hitAndOpenStream", "closeStream"]);
        await waitOnExecutionContext(ctx);
      }
      expect(await leasesHeldBy(own.keyId)).toEqual([]);
      // So the key's one place is free for a stream, and taken by it.
      const open = await withLimiterCalls(historyStream(workflowId, auth), oneStream);
      expect(open.res.status).toBe(200);
      const full = await withLimiterCalls(historyStream(workflowId, auth), oneStream);
      expect([full.res.status, ((await full.res.json()) as OutputErrorBody).code]).toEqual([429, "too_many_streams"]);
      await open.res.body!.cancel();

      // A key limited to one request a minute: its second connect is refused by the rate limit and holds no place.
      const limited = await createKey(own.organizationId);
      await env.DB.prepare("UPDATE api_keys SET rate_limit_per_minute = 1 WHERE id = ?").bind(limited.keyId).run();
      const first = await withLimiterCalls(historyStream(workflowId, { authorization: `Bearer ${limited.key}` }));
      expect(first.res.status).toBe(200);
      const second = await withLimiterCalls(historyStream(workflowId, { authorization: `Bearer ${limited.key}` }));
      expect([second.res.status, ((await second.res.json()) as OutputErrorBody).code]).toEqual([429, "rate_limited"]);
      expect(await leasesHeldBy(limited.keyId)).toHaveLength(1);
      await first.res.body!.cancel();
    });

    it("a streaming start's stream is counted but never refused", async () => {
      const stub = limiter();
      await stub.openStream("a", 1, true);
      expect(await stub.openStream("started", 1, false)).toEqual({ allowed: true, open: 2, max: 1 });
      expect(await stub.openStream("b", 1, true)).toMatchObject({ allowed: false, open: 2 });
    });

    it("the alarm sweeps expired leases, keeps live ones, and leaves nothing stored once none is held and no request is counted", async () => {
      const stub = limiter();
      const stored = () =>
        runInDurableObject(stub, async (_instance, state) => ({
          leases: [...state.storage.kv.list({ prefix: "stream-lease:" })].map(([key]) => key),
          alarm: await state.storage.getAlarm(),
        }));
      // One lease long expired, one live: the first lease armed the alarm.
      await stub.openStream("old", 5, true, Date.now() - 2 * STREAM_LEASE_TTL_MS);
      await stub.openStream("live", 5, true);
      expect((await stored()).alarm).not.toBeNull();
      await runInDurableObject(stub, (_instance, state) => state.storage.setAlarm(Date.now()));
      expect(await runDurableObjectAlarm(stub)).toBe(true);
      const kept = await stored();
      expect(kept.leases).toEqual(["stream-lease:live"]);
      // Set again for the live lease's expiry.
      expect(kept.alarm).toBeGreaterThan(Date.now() + STREAM_LEASE_TTL_MS - 60_000);
      // The alarm of released requests does not take a live lease with it.
      await stub.hit(5, 60, Date.now() - 120_000);
      await runInDurableObject(stub, (_instance, state) => state.storage.setAlarm(Date.now()));
      expect(await runDurableObjectAlarm(stub)).toBe(true);
      expect(await stored()).toMatchObject({ leases: ["stream-lease:live"] });
      await stub.closeStream("live");
      await runInDurableObject(stub, (_instance, state) => state.storage.setAlarm(Date.now()));
      expect(await runDurableObjectAlarm(stub)).toBe(true);
      expect(await stored()).toEqual({ leases: [], alarm: null });
      // A renewal that comes back after the alarm emptied the object (its lease had expired) holds
      // the place again, and an alarm comes for it: nothing is left stored for good.
      await stub.renewStream("late");
      expect(await stored()).toMatchObject({ leases: ["stream-lease:late"], alarm: expect.any(Number) });
    });
  });
});
