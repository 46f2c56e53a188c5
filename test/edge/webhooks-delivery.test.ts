/**
 * Completion webhooks delivered by the run's RunStream: signed (checked with the independent
 * `standardwebhooks` package), retried with the same webhook-id, durable across a DO abort, and
 * only ever to the run's own organization. The receiver is a real HTTP server on 127.0.0.1.
 */
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { Webhook } from "standardwebhooks";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { MAX_ROW_OUTPUT_BYTES } from "../../durable-objects/run-stream/row-limits.ts";
import {
  DEFAULT_WEBHOOK_RETRY_BASE_MS,
  DEFAULT_WEBHOOK_RETRY_WINDOW_MS,
  ENDPOINT_DELETED_ERROR,
  MAX_WEBHOOK_RETRY_INTERVAL_MS,
  webhookRetryDelay,
} from "../../durable-objects/run-stream/webhook-outbox.ts";
import { runStream } from "../../src/run-stream-client.ts";
import { runResetEvent } from "../../src/shared/run-events.ts";
import { interceptD1InPlace, loseAnswersInPlace } from "../support/d1-intercept.ts";
import { admin, seedCatalog, seedOrganization } from "./helpers.ts";
import { closeEvent, createRunningRun, finishedEvent, historyEvent, httpAttributeEvent, push } from "./stream-helpers.ts";
import { hookUrl, queuedMessage, received, register, setDns, until } from "./webhook-helpers.ts";

/** The errorDetails the host records for the failed runs of these tests. */
const BOOM_DETAILS = {
  message: "boom",
  name: "Error",
  retryable: false,
  activityId: "countWords",
  cause: { name: "WorkflowFailedError", message: "boom" },
};

async function finishRun(organizationId: string, status = "completed") {
  const { workflowId, runId } = await createRunningRun(organizationId);
  const failed = status === "completed" ? { error: null } : { error: "boom", errorDetails: BOOM_DETAILS };
  await push(workflowId, [
    historyEvent(runId, 1),
    closeEvent(runId, 2),
    { ...finishedEvent(runId, status), data: { ...finishedEvent(runId, status).data, ...failed } },
  ]);
  return { workflowId, runId };
}

/**
 * A new organization with one endpoint whose receiver answers as `script` says (hookUrl), and a
 * finished run whose message has had its first attempt: the receiver got it once.
 */
async function firstAttemptMade(prefix: string, script: string) {
  const org = await seedOrganization();
  const name = `${prefix}-${crypto.randomUUID()}`;
  const endpoint = await register(org.organizationId, hookUrl(name, script));
  const { workflowId } = await finishRun(org.organizationId);
  await until(async () => (await received(name)).length >= 1);
  return { org, name, endpoint, workflowId };
}

/** An endpoint's deliveries log (the admin route), newest attempt first. */
async function deliveriesOf(organizationId: string, endpointId: string) {
  const res = await admin("GET", `/admin/v1/organizations/${organizationId}/webhooks/${endpointId}/deliveries`);
  return (
    (await res.json()) as { deliveries: Array<{ attempt: number; status: string; error: string | null; nextAttemptAt: string | null }> }
  ).deliveries;
}

describe("completion webhooks", { timeout: 40_000 }, () => {
  beforeAll(async () => {
    await seedCatalog();
  });

  it("a receiver answering 500, 500, 200 gets the same signed message three times; the delivery log shows each attempt", async () => {
    const org = await seedOrganization();
    const name = `retry-${crypto.randomUUID()}`;
    const endpoint = await register(org.organizationId, hookUrl(name, "500,500,200"));
    const { workflowId, runId } = await finishRun(org.organizationId);

    const got = await until(async () => {
      const r = await received(name);
      return r.length >= 3 ? r : null;
    });
    expect(got.map((r) => r.status)).toEqual([500, 500, 200]);
    const ids = new Set(got.map((r) => r.headers["webhook-id"]));
    expect(ids.size).toBe(1);
    expect([...ids][0]).toMatch(/^msg_[0-9a-f]{32}$/);
    const verifier = new Webhook(endpoint.secret);
    for (const r of got) {
      const payload = verifier.verify(r.body, r.headers) as { type: string; timestamp: string; data: Record<string, unknown> };
      expect(payload.type).toBe("run.completed");
      expect(payload.data).toMatchObject({
        workflowId,
        runId,
        workflowName: "two_steps",
        status: "completed",
        output: { ok: true },
        error: null,
        errorDetails: null,
      });
      expect(payload.data.aggregations).toBeTypeOf("object");
      expect(Date.parse(payload.timestamp)).not.toBeNaN();
    }
    // The body is the same on every attempt (only the timestamp header and signature differ).
    expect(new Set(got.map((r) => r.body)).size).toBe(1);
    // A wrong secret does not verify.
    expect(() => new Webhook(`whsec_${btoa("another secret of 24 b!!")}`).verify(got[0]!.body, got[0]!.headers)).toThrow();

    const deliveries = await until(async () => {
      const res = await admin("GET", `/admin/v1/organizations/${org.organizationId}/webhooks/${endpoint.id}/deliveries`);
      const body = (await res.json()) as { deliveries: Array<Record<string, unknown>> };
      return body.deliveries.length >= 3 ? body.deliveries : null;
    });
    expect(deliveries.map((d) => [d.attempt, d.status, d.responseStatus])).toEqual([
      [3, "succeeded", 200],
      [2, "retrying", 500],
      [1, "retrying", 500],
    ]);
    expect(deliveries[2]!.nextAttemptAt).toBeTypeOf("string");
    expect(deliveries[0]!.nextAttemptAt).toBeNull();
    expect(
      deliveries.every(
        (d) => d.webhookId === got[0]!.headers["webhook-id"] && d.workflowId === workflowId && d.eventType === "run.completed",
      ),
    ).toBe(true);
    const outbox = await runStream(env, workflowId).webhookOutbox();
    // Delivered: the row stays (a requeue of the run's end is ignored), its body is not kept.
    expect(outbox).toEqual([expect.objectContaining({ endpointId: endpoint.id, state: "delivered", attempts: 3, bodyChars: 0 })]);
  });

  it("a 2xx is a delivery even when the answer's body then breaks off: logged as succeeded, not sent again", async () => {
    const org = await seedOrganization();
    const endpoint = await register(org.organizationId, hookUrl(`broken-body-${crypto.randomUUID()}`));
    const realFetch = globalThis.fetch;
    let sent = 0;
    // The receiver answers 200, then its connection drops in the middle of the body (read or not, the status is its acknowledgement).
    const spy = vi.spyOn(globalThis, "fetch").mockImplementation(async (input, init) => {
      if (!String(input instanceof Request ? input.url : input).includes("/hook/")) return realFetch(input as RequestInfo, init);
      sent++;
      const body = new ReadableStream({
        start(controller) {
          controller.enqueue(new TextEncoder().encode("ok"));
          controller.error(new Error("connection reset (test)"));
        },
      });
      return new Response(body, { status: 200 });
    });
    try {
      const { work } = await queuedMessage(org.organizationId, endpoint.id, `msg_broken_${crypto.randomUUID().slice(0, 8)}`);
      expect(await work({})).toMatchObject([{ state: "delivered", attempts: 1 }]);
      expect(await work({})).toMatchObject([{ state: "delivered", attempts: 1 }]);
    } finally {
      spy.mockRestore();
    }
    expect(sent).toBe(1);
    expect(await deliveriesOf(org.organizationId, endpoint.id)).toEqual([
      expect.objectContaining({ attempt: 1, status: "succeeded", responseStatus: 200, error: null, nextAttemptAt: null }),
    ]);
  });

  /** Answers every delivery to the receiver with `answer` (other fetches go out as usual); the count of sends. */
  function receiverAnswers(answer: () => Response) {
    const realFetch = globalThis.fetch;
    const sent = { count: 0 };
    const spy = vi.spyOn(globalThis, "fetch").mockImplementation(async (input, init) => {
      if (!String(input instanceof Request ? input.url : input).includes("/hook/")) return realFetch(input as RequestInfo, init);
      sent.count++;
      return answer();
    });
    return { sent, restore: () => spy.mockRestore() };
  }

  it("a receiver's Retry-After (seconds or a date) is followed: the next attempt is no sooner, at most 8 h on, and never sooner than the backoff", async () => {
    const org = await seedOrganization();
    const endpoint = await register(org.organizationId, hookUrl(`retry-after-${crypto.randomUUID()}`));
    // A date is written as the receiver answers (its whole seconds then, not those of a moment before).
    const cases: Array<{ retryAfter: string | (() => string); status: number; waitMs: number }> = [
      { retryAfter: "3600", status: 503, waitMs: 3_600_000 },
      { retryAfter: () => new Date(Date.now() + 2 * 3_600_000).toUTCString(), status: 429, waitMs: 2 * 3_600_000 },
      // Asking for days: held to the longest backoff step.
      { retryAfter: "864000", status: 429, waitMs: MAX_WEBHOOK_RETRY_INTERVAL_MS },
      // Asking for less than the backoff (5 s after a first attempt): the backoff stands.
      { retryAfter: "1", status: 503, waitMs: DEFAULT_WEBHOOK_RETRY_BASE_MS },
      // Unreadable: the backoff.
      { retryAfter: "soon", status: 503, waitMs: DEFAULT_WEBHOOK_RETRY_BASE_MS },
    ];
    for (const { retryAfter, status, waitMs } of cases) {
      const header = () => (typeof retryAfter === "string" ? retryAfter : retryAfter());
      const receiver = receiverAnswers(() => new Response("busy", { status, headers: { "retry-after": header() } }));
      try {
        const before = Date.now();
        const { work } = await queuedMessage(org.organizationId, endpoint.id, `msg_ra_${crypto.randomUUID().slice(0, 8)}`);
        const [row] = await work({ WEBHOOK_RETRY_BASE_MS: String(DEFAULT_WEBHOOK_RETRY_BASE_MS) });
        expect(receiver.sent.count).toBe(1);
        expect(row).toMatchObject({ state: "pending", attempts: 1 });
        // Date headers have whole seconds: allow one.
        expect(row!.nextAttemptAt, String(retryAfter)).toBeGreaterThanOrEqual(before + waitMs - 1_000);
        expect(row!.nextAttemptAt).toBeLessThanOrEqual(Date.now() + waitMs);
        const [logged] = await deliveriesOf(org.organizationId, endpoint.id);
        expect(logged).toMatchObject({ status: "retrying", nextAttemptAt: new Date(row!.nextAttemptAt).toISOString() });
      } finally {
        receiver.restore();
      }
    }
  });

  it("a receiver's Retry-After never moves the last retry past the window's end", async () => {
    const org = await seedOrganization();
    const endpoint = await register(org.organizationId, hookUrl(`retry-after-window-${crypto.randomUUID()}`));
    const receiver = receiverAnswers(() => new Response("busy", { status: 503, headers: { "retry-after": "28800" } }));
    try {
      const { work, workflowId } = await queuedMessage(org.organizationId, endpoint.id, `msg_raw_${crypto.randomUUID().slice(0, 8)}`);
      // The first attempt was 23 h ago: the window ends in 1 h, before the 8 h asked for.
      const firstAt = Date.now() - 23 * 3_600_000;
      await runInDurableObject(runStream(env, workflowId), (_i, state) => {
        state.storage.sql.exec("UPDATE webhook_outbox SET attempts = 7, first_attempt_at = ?", firstAt);
      });
      const [row] = await work({});
      expect(row).toMatchObject({ state: "pending", attempts: 8, nextAttemptAt: firstAt + DEFAULT_WEBHOOK_RETRY_WINDOW_MS });
    } finally {
      receiver.restore();
    }
  });

  it("a receiver answering 410 Gone: the delivery is given up at once, logged as failed, never sent again", async () => {
    const org = await seedOrganization();
    const endpoint = await register(org.organizationId, hookUrl(`gone-${crypto.randomUUID()}`));
    const receiver = receiverAnswers(() => new Response("gone", { status: 410 }));
    try {
      const { work } = await queuedMessage(org.organizationId, endpoint.id, `msg_gone_${crypto.randomUUID().slice(0, 8)}`);
      expect(await work({})).toMatchObject([{ state: "failed", attempts: 1 }]);
      expect(await work({})).toMatchObject([{ state: "failed", attempts: 1 }]);
      expect(receiver.sent.count).toBe(1);
    } finally {
      receiver.restore();
    }
    expect(await deliveriesOf(org.organizationId, endpoint.id)).toEqual([
      expect.objectContaining({
        attempt: 1,
        status: "failed",
        responseStatus: 410,
        error: expect.stringContaining("410"),
        nextAttemptAt: null,
      }),
    ]);
  });

  it("a DO abort in the middle of a delivery still delivers, with the same webhook-id", async () => {
    const { name, endpoint, workflowId } = await firstAttemptMade("abort", "hang:4000,200");
    // The first attempt is in flight (the receiver holds its answer): reset the DO.
    await runInDurableObject(runStream(env, workflowId), (_instance, state) => {
      try {
        state.abort("test: abort mid-delivery");
      } catch {
        /* abort throws in the aborted context */
      }
    }).catch(() => undefined);
    const got = await until(async () => {
      const r = await received(name);
      return r.length >= 2 ? r : null;
    });
    expect(got[0]!.headers["webhook-id"]).toBe(got[1]!.headers["webhook-id"]);
    expect(got[0]!.body).toBe(got[1]!.body);
    new Webhook(endpoint.secret).verify(got[1]!.body, got[1]!.headers);
    const outbox = await until(async () => {
      const rows = await runStream(env, workflowId).webhookOutbox();
      return rows[0]?.state === "delivered" ? rows : null;
    });
    expect(outbox).toHaveLength(1);
  });

  it("another organization's runs never reach an endpoint", async () => {
    const mine = await seedOrganization();
    const other = await seedOrganization();
    const mineName = `mine-${crypto.randomUUID()}`;
    const otherName = `other-${crypto.randomUUID()}`;
    await register(mine.organizationId, hookUrl(mineName));
    await register(other.organizationId, hookUrl(otherName));
    const { workflowId } = await finishRun(mine.organizationId);
    const got = await until(async () => {
      const r = await received(mineName);
      return r.length >= 1 ? r : null;
    });
    expect(JSON.parse(got[0]!.body).data.workflowId).toBe(workflowId);
    // Give a wrong delivery every chance to happen, then check none did.
    await new Promise((r) => setTimeout(r, 1500));
    expect(await received(otherName)).toEqual([]);
    expect((await runStream(env, workflowId).webhookOutbox()).map((r) => r.endpointId)).toHaveLength(1);
  });

  it("each endpoint gets only the event types it asked for; a failed run sends run.failed", async () => {
    const org = await seedOrganization();
    const failedOnly = `failed-only-${crypto.randomUUID()}`;
    const completedOnly = `completed-only-${crypto.randomUUID()}`;
    const a = await register(org.organizationId, hookUrl(failedOnly), ["run.failed"]);
    await register(org.organizationId, hookUrl(completedOnly), ["run.completed"]);
    const { workflowId } = await finishRun(org.organizationId, "failed");
    const got = await until(async () => {
      const r = await received(failedOnly);
      return r.length >= 1 ? r : null;
    });
    const payload = new Webhook(a.secret).verify(got[0]!.body, got[0]!.headers) as { type: string; data: Record<string, unknown> };
    expect(payload.type).toBe("run.failed");
    expect(payload.data).toMatchObject({ workflowId, status: "failed", error: "boom", errorDetails: BOOM_DETAILS });
    await new Promise((r) => setTimeout(r, 1000));
    expect(await received(completedOnly)).toEqual([]);
  });

  it("a rotated secret signs the next attempt, beside the replaced one until its overlap ends; each signature verifies", async () => {
    const { org, name, endpoint, workflowId } = await firstAttemptMade("rotate-overlap", "500,500,200");
    const res = await admin("POST", `/admin/v1/organizations/${org.organizationId}/webhooks/${endpoint.id}/rotate-secret`);
    const rotated = (await res.json()) as { secret: string; previousSecretExpiresAt: string };
    const second = await until(async () => (await received(name))[1]);
    // Two signatures, the new secret's first: a receiver holding either secret accepts the message.
    expect(second.headers["webhook-signature"]!.split(" ")).toHaveLength(2);
    new Webhook(rotated.secret).verify(second.body, second.headers);
    new Webhook(endpoint.secret).verify(second.body, second.headers);
    // Once the overlap has ended, the new secret signs alone.
    await env.DB.prepare("UPDATE webhook_endpoints SET previous_secret_expires_at = ? WHERE id = ?")
      .bind(new Date(Date.now() - 1_000).toISOString(), endpoint.id)
      .run();
    await runInDurableObject(runStream(env, workflowId), (_i, state) => {
      state.storage.sql.exec("UPDATE webhook_outbox SET next_attempt_at = ?", Date.now() - 1);
    });
    await runDurableObjectAlarm(runStream(env, workflowId));
    const third = await until(async () => (await received(name))[2]);
    expect(third.headers["webhook-signature"]!.split(" ")).toHaveLength(1);
    new Webhook(rotated.secret).verify(third.body, third.headers);
    expect(() => new Webhook(endpoint.secret).verify(third.body, third.headers)).toThrow();
  });

  it("a deleted endpoint stops receiving; a secret rotated with no overlap alone signs the next attempt", async () => {
    const { org, name, endpoint } = await firstAttemptMade("rotate", "500,200");
    const rotated = (await (
      await admin("POST", `/admin/v1/organizations/${org.organizationId}/webhooks/${endpoint.id}/rotate-secret`, {
        previousSecretValidForSeconds: 0,
      })
    ).json()) as { secret: string };
    expect(rotated.secret).not.toBe(endpoint.secret);
    const got = await until(async () => {
      const r = await received(name);
      return r.length >= 2 ? r : null;
    });
    new Webhook(rotated.secret).verify(got[1]!.body, got[1]!.headers);
    expect(() => new Webhook(endpoint.secret).verify(got[1]!.body, got[1]!.headers)).toThrow();

    const gone = `deleted-${crypto.randomUUID()}`;
    const deleted = await register(org.organizationId, hookUrl(gone));
    expect((await admin("DELETE", `/admin/v1/organizations/${org.organizationId}/webhooks/${deleted.id}`)).status).toBe(200);
    const { workflowId } = await finishRun(org.organizationId);
    await until(async () => (await received(name)).length >= 3);
    expect(await received(gone)).toEqual([]);
    expect((await runStream(env, workflowId).webhookOutbox()).map((r) => r.endpointId)).toEqual([endpoint.id]);
  });

  it("an endpoint deleted while a delivery waits to be retried: the delivery is given up, and its log says so last", async () => {
    const { org, name, endpoint, workflowId } = await firstAttemptMade("deleted-later", "500,500");
    await until(async () => ((await deliveriesOf(org.organizationId, endpoint.id))[0]?.status === "retrying" ? true : null));
    expect((await admin("DELETE", `/admin/v1/organizations/${org.organizationId}/webhooks/${endpoint.id}`)).status).toBe(200);
    await runInDurableObject(runStream(env, workflowId), (_i, state) => {
      state.storage.sql.exec("UPDATE webhook_outbox SET next_attempt_at = ?", Date.now() - 1);
    });
    await runDurableObjectAlarm(runStream(env, workflowId));
    expect((await runStream(env, workflowId).webhookOutbox()).map((r) => r.state)).toEqual(["failed"]);
    const deliveries = await deliveriesOf(org.organizationId, endpoint.id);
    expect(deliveries[0]).toMatchObject({ status: "failed", attempt: 2, nextAttemptAt: null, error: ENDPOINT_DELETED_ERROR });
    expect((await received(name)).length).toBe(1);
  });

  it("an output too large for the run's row is left out of the message (outputOmitted: true)", async () => {
    const org = await seedOrganization();
    const name = `large-${crypto.randomUUID()}`;
    await register(org.organizationId, hookUrl(name, "200"));
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    const finished = finishedEvent(runId, "completed");
    await push(workflowId, [
      historyEvent(runId, 1),
      closeEvent(runId, 2),
      { ...finished, data: { ...finished.data, output: { text: "x".repeat(MAX_ROW_OUTPUT_BYTES + 1) } } },
    ]);
    const [got] = await until(async () => {
      const r = await received(name);
      return r.length >= 1 ? r : null;
    });
    const payload = JSON.parse(got!.body) as { data: Record<string, unknown> };
    expect(payload.data).toMatchObject({ workflowId, runId, status: "completed", output: null, outputOmitted: true });
    expect(got!.body.length).toBeLessThan(10_000);
  });

  it("a failed lookup of the run's endpoints (a D1 error) is retried with backoff, not in a loop; the message goes out once D1 answers", async () => {
    const org = await seedOrganization();
    const name = `enqueue-retry-${crypto.randomUUID()}`;
    await register(org.organizationId, hookUrl(name, "200"));
    // The outbox's endpoint lookup is the only `.all()` on D1 in a run's finish: it fails while this is set.
    let failing = true;
    let lookups = 0;
    const undo = interceptD1InPlace(env.DB, (call) => {
      if (call.kind !== "statement" || call.method !== "all" || !failing) return;
      lookups++;
      return Promise.reject(new Error("D1 is unavailable (test)"));
    });
    try {
      const warn = vi.spyOn(console, "warn").mockImplementation(() => undefined);
      await finishRun(org.organizationId);
      await new Promise((r) => setTimeout(r, 600));
      // Retried after 0.2 s, then 1 s (WEBHOOK_RETRY_BASE_MS 200 × 5^n): a few lookups, not hundreds.
      expect(lookups).toBeGreaterThanOrEqual(1);
      expect(lookups).toBeLessThanOrEqual(3);
      expect(warn).toHaveBeenCalledWith(expect.stringContaining("enqueue failed, retried later"));
      failing = false;
      const got = await until(async () => {
        const r = await received(name);
        return r.length >= 1 ? r : null;
      });
      expect(got.map((r) => r.status)).toEqual([200]);
    } finally {
      undo();
      vi.restoreAllMocks();
    }
  });

  /** A delivered message's event type and run. */
  const typeAndRun = (r: { body: string }) => {
    const body = JSON.parse(r.body) as { type: string; data: { runId: string } };
    return [body.type, body.data.runId];
  };

  it("a run reset while its message waits to be queued (the endpoint lookup failing): its run.completed still goes out, then the reset's run sends its own", async () => {
    const org = await seedOrganization();
    const name = `reset-before-enqueue-${crypto.randomUUID()}`;
    await register(org.organizationId, hookUrl(name, "200"));
    let failing = true;
    const undo = interceptD1InPlace(env.DB, (call) => {
      if (call.kind !== "statement" || call.method !== "all" || !failing) return;
      return Promise.reject(new Error("D1 is unavailable (test)"));
    });
    try {
      vi.spyOn(console, "warn").mockImplementation(() => undefined);
      const { workflowId, runId } = await finishRun(org.organizationId);
      // A reset of the completed run: its run is now the workflow's latest, still going, and making
      // an HTTP request (usage of its own, which the first run's message must not count).
      const resetRunId = crypto.randomUUID();
      await push(workflowId, [runResetEvent(resetRunId, runId), historyEvent(resetRunId, 1), httpAttributeEvent(resetRunId, 1)]);
      failing = false;
      const first = await until(async () => {
        const r = await received(name);
        return r.length >= 1 ? r : null;
      });
      expect(first.map(typeAndRun)).toEqual([["run.completed", runId]]);
      await push(workflowId, [closeEvent(resetRunId, 2), finishedEvent(resetRunId, "completed")]);
      const both = await until(async () => {
        const r = await received(name);
        return r.length >= 2 ? r : null;
      });
      expect(both.map(typeAndRun)).toEqual([
        ["run.completed", runId],
        ["run.completed", resetRunId],
      ]);
      expect(new Set(both.map((r) => r.headers["webhook-id"])).size).toBe(2);
      // Each message counts the usage of its own run and of the runs it follows from, as each run's result does.
      const httpRequests = (r: { body: string }) =>
        (JSON.parse(r.body) as { data: { aggregations: { httpRequests: { total: number } } } }).data.aggregations.httpRequests.total;
      expect(both.map(httpRequests)).toEqual([0, 1]);
    } finally {
      undo();
      vi.restoreAllMocks();
    }
  });

  it("security: an endpoint whose DNS moved to a private address after registration is not sent to; the attempt says why and is retried", async () => {
    const org = await seedOrganization();
    const name = `moves-${crypto.randomUUID().slice(0, 8)}.partner.test`;
    await setDns(name, { A: ["93.184.215.14"] });
    const endpoint = await register(org.organizationId, `https://${name}/hook`);
    await setDns(name, { A: ["127.0.0.1"] });
    await finishRun(org.organizationId);
    const deliveries = await until(async () => {
      const res = await admin("GET", `/admin/v1/organizations/${org.organizationId}/webhooks/${endpoint.id}/deliveries`);
      const body = (await res.json()) as { deliveries: Array<{ status: string; responseStatus: number | null; error: string | null }> };
      return body.deliveries.length > 0 ? body.deliveries : null;
    });
    expect(deliveries[0]).toMatchObject({ status: "retrying", responseStatus: null });
    expect(deliveries[0]!.error).toMatch(/resolves to 127\.0\.0\.1, which is not public: loopback/);
  });

  it("a WEBHOOK_DNS_RESOLVER that is not an http(s) URL: each attempt fails, is logged and said loudly, and past the window the delivery is given up", async () => {
    const org = await seedOrganization();
    const name = `resolver-${crypto.randomUUID().slice(0, 8)}.partner.test`;
    await setDns(name, { A: ["93.184.215.14"] });
    const endpoint = await register(org.organizationId, `https://${name}/hook`);
    const { work } = await queuedMessage(org.organizationId, endpoint.id, `msg_resolver_${crypto.randomUUID().slice(0, 8)}`);
    const logged = vi.spyOn(console, "error").mockImplementation(() => undefined);
    try {
      const misconfigured = { WEBHOOK_DNS_RESOLVER: "1.1.1.1", WEBHOOK_RETRY_WINDOW_MS: "50" };
      expect(await work(misconfigured)).toMatchObject([{ state: "pending", attempts: 1 }]);
      expect((await deliveriesOf(org.organizationId, endpoint.id))[0]).toMatchObject({
        attempt: 1,
        status: "retrying",
        error: expect.stringContaining("WEBHOOK_DNS_RESOLVER is not an http(s) URL"),
      });
      await new Promise((r) => setTimeout(r, 60));
      expect(await work(misconfigured)).toMatchObject([{ state: "failed", attempts: 2 }]);
      expect((await deliveriesOf(org.organizationId, endpoint.id))[0]).toMatchObject({ attempt: 2, status: "failed", nextAttemptAt: null });
      expect(logged.mock.calls.map(([line]) => JSON.parse(String(line)).message)).toEqual([
        "webhook delivery failed: WEBHOOK_DNS_RESOLVER",
        "webhook delivery failed: WEBHOOK_DNS_RESOLVER",
      ]);
    } finally {
      logged.mockRestore();
    }
  });

  it("backs off 5 s, 25 s, ... up to 8 h, and marks a delivery failed once 24 h have passed since its first attempt", async () => {
    const schedule = [1, 2, 3, 4, 5, 6, 7, 8].map((n) => webhookRetryDelay(n));
    expect(schedule.slice(0, 3)).toEqual([5_000, 25_000, 125_000]);
    expect(schedule.every((d, i) => i === 0 || d >= schedule[i - 1]!)).toBe(true);
    expect(Math.max(...schedule)).toBe(MAX_WEBHOOK_RETRY_INTERVAL_MS);
    expect(DEFAULT_WEBHOOK_RETRY_BASE_MS).toBe(5_000);

    const { org, name, endpoint, workflowId } = await firstAttemptMade("gives-up", "500,500,500,500,500");
    // Pretend the first attempt was 25 hours ago and the next one is due now.
    await runInDurableObject(runStream(env, workflowId), (_i, state) => {
      state.storage.sql.exec(
        "UPDATE webhook_outbox SET first_attempt_at = ?, next_attempt_at = ?",
        Date.now() - 25 * 3_600_000,
        Date.now() - 1,
      );
    });
    await runDurableObjectAlarm(runStream(env, workflowId));
    const rows = await until(async () => {
      const r = await runStream(env, workflowId).webhookOutbox();
      return r[0]?.state === "failed" ? r : null;
    });
    expect(rows).toHaveLength(1);
    const deliveries = (await (
      await admin("GET", `/admin/v1/organizations/${org.organizationId}/webhooks/${endpoint.id}/deliveries`)
    ).json()) as {
      deliveries: Array<{ status: string; nextAttemptAt: string | null; responseStatus: number }>;
    };
    expect(deliveries.deliveries[0]).toMatchObject({ status: "failed", nextAttemptAt: null, responseStatus: 500 });
    const count = (await received(name)).length;
    await new Promise((r) => setTimeout(r, 1500));
    expect((await received(name)).length).toBe(count);
  });

  it("the last retry is at the window's end (24 h after the first attempt), not a backoff step of up to 8 h past it", async () => {
    const { org, endpoint, workflowId } = await firstAttemptMade("window-end", "500,500,500,500,500");
    // The ninth attempt, 21.4 h after the first, is due now: its backoff (8 h) would end at 29.4 h.
    const firstAt = Date.now() - 21.4 * 3_600_000;
    await runInDurableObject(runStream(env, workflowId), (_i, state) => {
      state.storage.sql.exec("UPDATE webhook_outbox SET attempts = 8, first_attempt_at = ?, next_attempt_at = ?", firstAt, Date.now() - 1);
    });
    await runDurableObjectAlarm(runStream(env, workflowId));
    const deliveries = await until(async () => (await deliveriesOf(org.organizationId, endpoint.id)).find((d) => d.attempt === 9) ?? null);
    expect(deliveries).toMatchObject({
      status: "retrying",
      nextAttemptAt: new Date(firstAt + DEFAULT_WEBHOOK_RETRY_WINDOW_MS).toISOString(),
    });
    const [row] = await runStream(env, workflowId).webhookOutbox();
    expect(row).toMatchObject({ state: "pending", attempts: 9, nextAttemptAt: firstAt + DEFAULT_WEBHOOK_RETRY_WINDOW_MS });
    // That retry, at the window's end, is the last: failing, the delivery is failed.
    await runInDurableObject(runStream(env, workflowId), (_i, state) => {
      state.storage.sql.exec(
        "UPDATE webhook_outbox SET first_attempt_at = ?, next_attempt_at = ?",
        Date.now() - DEFAULT_WEBHOOK_RETRY_WINDOW_MS,
        Date.now() - 1,
      );
    });
    const lastAttemptAt = Date.now();
    await runDurableObjectAlarm(runStream(env, workflowId));
    const [failed] = await until(async () => {
      const rows = await runStream(env, workflowId).webhookOutbox();
      return rows[0]?.state === "failed" ? rows : null;
    });
    // Its next attempt time (only for a DO gone mid-send) is a backoff step on, never in the past.
    expect(failed!.nextAttemptAt).toBeGreaterThan(lastAttemptAt + 60_000);
  });

  it("an endpoint D1 cannot read at an attempt: the attempt fails like any other, is logged, and past 24 h the delivery is given up", async () => {
    const { org, name, endpoint, workflowId } = await firstAttemptMade("endpoint-unreadable", "500,500,500");
    const stub = runStream(env, workflowId);
    const due = (firstAttemptAgoMs: number) =>
      runInDurableObject(stub, (_i, state) => {
        state.storage.sql.exec(
          "UPDATE webhook_outbox SET first_attempt_at = ?, next_attempt_at = ?",
          Date.now() - firstAttemptAgoMs,
          Date.now() - 1,
        );
      });
    const deliveries = () => deliveriesOf(org.organizationId, endpoint.id);
    const undo = loseAnswersInPlace(env.DB, /SELECT url, secret, previous_secret, previous_secret_expires_at FROM webhook_endpoints/, () =>
      Promise.reject(new Error("D1 is unavailable (test)")),
    );
    try {
      // Within the window: retried later, and the log says so.
      await due(60_000);
      await runDurableObjectAlarm(stub);
      expect((await deliveries())[0]).toMatchObject({
        attempt: 2,
        status: "retrying",
        error: expect.stringContaining("could not be read"),
      });
      expect((await stub.webhookOutbox())[0]).toMatchObject({ state: "pending", attempts: 2 });
      // Past the window: given up, as any failed attempt would be, not retried every 8 h for ever.
      await due(25 * 3_600_000);
      await runDurableObjectAlarm(stub);
      expect((await deliveries())[0]).toMatchObject({ attempt: 3, status: "failed", nextAttemptAt: null });
      expect((await stub.webhookOutbox())[0]).toMatchObject({ state: "failed", attempts: 3 });
    } finally {
      undo();
    }
    expect(await received(name)).toHaveLength(1);
  });

  it("a reset marked pending does not move a webhook's retry later: the DO's one alarm stays at the retry's time", async () => {
    const { org, workflowId } = await firstAttemptMade("reset-keeps-retry", "500,500,500,500");
    const stub = runStream(env, workflowId);
    // The next attempt is due in 2 s; the watchdog, left to itself, would wake the DO 30 s from now.
    const due = Date.now() + 2_000;
    await runInDurableObject(stub, async (_i, state) => {
      state.storage.sql.exec("UPDATE webhook_outbox SET next_attempt_at = ? WHERE state = 'pending'", due);
      await state.storage.setAlarm(due);
    });
    const run = await env.DB.prepare("SELECT id FROM runs WHERE temporal_workflow_id = ?").bind(workflowId).first<{ id: string }>();
    expect(await stub.holdForReset({ organizationId: org.organizationId, workflowId, runUuid: run!.id })).toMatchObject({ ok: true });
    const alarm = await runInDurableObject(stub, (_i, state) => state.storage.getAlarm());
    expect(alarm).not.toBeNull();
    expect(alarm!).toBeLessThanOrEqual(due);
  });
});
