/**
 * A run the edge accepted whose start Temporal then refused for good (the start outbox's definite
 * refusal): its row ends `failed` with no Temporal run id, and nothing ever reaches its log. Its
 * streams and its trace must say it ended, not "not started yet, retry" forever.
 */
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runStream } from "../../src/run-stream-client.ts";
import { HOST_PATHS } from "../../src/shared/host-api.ts";
import { call, errorCodeOf, scriptHost, seedCatalog, seedOrganization } from "./helpers.ts";
import { runStartOutboxAttempt, startHelloInItsDo } from "./stream-helpers.ts";
import { hookUrl, received, register, until } from "./webhook-helpers.ts";

let refuseStarts = false;
/** A status a proxy before the host answers starts with (no body of the host's). */
let proxyAnswer: number | null = null;
let restoreHost: () => void;

beforeAll(async () => {
  await seedCatalog();
  restoreHost = scriptHost(async (_request, path) => {
    if (path === HOST_PATHS.start && proxyAnswer) return new Response("slow down", { status: proxyAnswer });
    if (path === HOST_PATHS.start && refuseStarts)
      return Response.json({ error: { code: "workflow_not_found", message: "the workflow left the host's catalog" } }, { status: 404 });
    throw new TypeError("connection refused");
  });
});
afterAll(() => restoreHost());

describe("a run accepted, then refused for good before it started", () => {
  it("its streams answer 204 (ended, nothing to show), the run viewer's its end and why, its trace 404 trace_not_available, not 503 / 424 with Retry-After for good", async () => {
    const org = await seedOrganization();
    refuseStarts = false;
    const { runUuid, workflowId, stub, reply } = await startHelloInItsDo(org.organizationId);
    expect(reply).toMatchObject({ ok: true, started: { runId: null, status: "scheduled" } });
    refuseStarts = true;
    await runStartOutboxAttempt(stub);
    expect(await env.DB.prepare("SELECT status, temporal_run_id FROM runs WHERE id = ?").bind(runUuid).first()).toEqual({
      status: "failed",
      temporal_run_id: null,
    });

    const bearer = { authorization: `Bearer ${org.key}` };
    const status = await call(`/workflow/${workflowId}/status`, { headers: bearer });
    expect(await status.json()).toMatchObject({ workflowId, status: "failed" });

    const minted = await call(`/workflow/${workflowId}/stream-token`, { method: "POST", headers: bearer });
    const { token: streamToken } = (await minted.json()) as { token: string };
    const jwt = await new SignJWT({ org_id: org.organizationId })
      .setProtectedHeader({ alg: "HS256" })
      .setExpirationTime("5m")
      .sign(new TextEncoder().encode("edge-test-jwt-secret-at-least-32-bytes-long"));
    for (const [path, headers] of [
      [`/workflow/${workflowId}/history/stream`, bearer],
      [`/api/v1/workflow-runs/${runUuid}/stream`, { authorization: `Bearer ${jwt}` }],
    ] as Array<[string, Record<string, string>]>) {
      const res = await call(path, { headers });
      expect(res.status, path).toBe(204);
      expect(res.headers.get("retry-after"), path).toBeNull();
    }

    // The run viewer's page shows how a run ended and why: it gets the end alone, a `done` with the
    // reason (a 204 left the page with no run and no reason).
    const viewerUrl = `/runs/${workflowId}/events?token=${streamToken}`;
    const viewer = await call(viewerUrl);
    expect(viewer.status).toBe(200);
    expect(viewer.headers.get("content-type")).toMatch(/^text\/event-stream/);
    expect(viewer.headers.get("retry-after")).toBeNull();
    const frames = await viewer.text();
    const done = frames.split("\n\n").find((frame) => /^(id: .*\n)?event: done\n/.test(frame));
    expect(done, frames).toBeDefined();
    expect(JSON.parse(done!.slice(done!.indexOf("data: ") + 6))).toEqual({
      status: "failed",
      output: null,
      error: expect.stringContaining("the workflow left the host's catalog"),
      newRunId: null,
    });
    expect(frames).not.toMatch(/^event: (run|step)$/m);
    // The stream ends after it, and an EventSource reconnects (retry: 1000) with the last id it got:
    // with none, it got this `done` again, every second, for as long as nothing closed it. Its id
    // says the client has the end, so the reconnect is 204, which stops EventSource for good.
    const doneId = /^id: (.*)$/m.exec(done!)?.[1];
    expect(doneId, done).toBeDefined();
    for (const reconnect of [
      call(viewerUrl, { headers: { "last-event-id": doneId! } }),
      call(`${viewerUrl}&lastEventId=${encodeURIComponent(doneId!)}`),
    ]) {
      const res = await reconnect;
      expect(res.status).toBe(204);
      expect(res.headers.get("cache-control")).toBe("no-store");
    }

    const trace = await call(`/workflow/${workflowId}/trace-log`, { headers: bearer });
    expect(trace.status).toBe(404);
    expect(trace.headers.get("retry-after")).toBeNull();
    expect(errorCodeOf(await trace.json())).toBe("trace_not_available");
  });
});

describe("the completion webhook of a run refused for good before it started", () => {
  it("goes out once, as run.failed with the refusal and runId null, though nothing of the run reached its log", async () => {
    const org = await seedOrganization();
    const name = `never-started-${crypto.randomUUID()}`;
    await register(org.organizationId, hookUrl(name, "200"));
    refuseStarts = false;
    const { workflowId, stub } = await startHelloInItsDo(org.organizationId);
    refuseStarts = true;
    await runStartOutboxAttempt(stub);
    const got = await until(async () => {
      const r = await received(name);
      return r.length >= 1 ? r : null;
    });
    const body = JSON.parse(got[0]!.body) as { type: string; data: Record<string, unknown> };
    expect(body.type).toBe("run.failed");
    expect(body.data).toMatchObject({ workflowId, runId: null, status: "failed", workflowName: "hello" });
    expect(String(body.data.error)).toContain("could not be started");
    // Another alarm sends nothing more.
    await runDurableObjectAlarm(stub);
    await new Promise((r) => setTimeout(r, 200));
    expect(await received(name)).toHaveLength(1);
  });
});

describe("an Idempotency-Key replay of a streaming execute whose run was refused for good", () => {
  it("answers as the blocking execute does for a failed run (200 success: false), not 202 success: true as if it were still to start", async () => {
    const org = await seedOrganization();
    refuseStarts = false;
    const hello = await env.DB.prepare("SELECT id FROM workflows WHERE name = 'hello' AND organization_id IS NULL").first<{ id: string }>();
    const key = `refused-${crypto.randomUUID()}`;
    const post = () =>
      call("/api/v1/workflow-runs/execute/stream", {
        method: "POST",
        headers: {
          authorization: "Bearer edge-test-internal-secret-of-32-characters",
          "x-organization-id": org.organizationId,
          "content-type": "application/json",
          "idempotency-key": key,
        },
        body: JSON.stringify({ workflowId: hello!.id, inputs: { name: "Ada" } }),
      });
    // The host is down: accepted, to start later.
    const first = await post();
    expect(first.status).toBe(202);
    const accepted = (await first.json()) as { success: boolean; workflowRun: { id: string; status: string } };
    expect(accepted).toMatchObject({ success: true, workflowRun: { status: "scheduled" } });
    const { workflowId } = (await env.DB.prepare("SELECT temporal_workflow_id AS workflowId FROM runs WHERE id = ?")
      .bind(accepted.workflowRun.id)
      .first<{ workflowId: string }>())!;
    refuseStarts = true;
    await runStartOutboxAttempt(runStream(env, workflowId));
    const replay = await post();
    expect(replay.status).toBe(200);
    expect(replay.headers.get("idempotent-replayed")).toBe("true");
    expect(await replay.json()).toMatchObject({ success: false, workflowRun: { id: accepted.workflowRun.id, status: "failed" } });
  });
});

describe("a start retried while a proxy before the host answers 408 or 429", () => {
  it("stays accepted and pending (an outage, not a refusal): it is not recorded as failed", async () => {
    const org = await seedOrganization();
    for (const status of [408, 429]) {
      refuseStarts = false;
      proxyAnswer = null;
      const { runUuid, stub, reply } = await startHelloInItsDo(org.organizationId);
      expect(reply).toMatchObject({ ok: true, started: { status: "scheduled" } });
      proxyAnswer = status;
      await runStartOutboxAttempt(stub);
      proxyAnswer = null;
      await runInDurableObject(stub, (_i, state) => {
        expect(state.storage.sql.exec<{ state: string }>("SELECT state FROM run_start").one().state, String(status)).toBe("pending");
      });
      expect(await env.DB.prepare("SELECT status FROM runs WHERE id = ?").bind(runUuid).first("status"), String(status)).toBe("scheduled");
    }
  });
});
