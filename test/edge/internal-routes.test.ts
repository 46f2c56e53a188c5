import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import type { RunStream } from "../../durable-objects/run-stream.ts";
import { catalogEntries } from "../../host/catalog.ts";
import { runStream } from "../../src/run-stream-client.ts";
import { MAX_SIGNED_BODY_BYTES } from "../../src/shared/capped-body.ts";
import { signRequest } from "../../src/shared/signing.ts";
import { endlessBody, stalledBody } from "../support/endless-bodies.ts";
import { call, type ErrorBody, seedCatalog, seedOrganization, signedPost, TEST_HOST_SECRET } from "./helpers.ts";

const WORKFLOW_ID = "hello-11111111-2222-4333-8444-555555555555";

async function insertRun(organizationId: string, workflowId: string) {
  const wf = await env.DB.prepare("SELECT id FROM workflows WHERE name = 'hello' AND organization_id IS NULL").first<{ id: string }>();
  await env.DB.prepare(
    "INSERT INTO runs (id, organization_id, workflow_id, workflow_name, temporal_workflow_id, status, input) VALUES (?, ?, ?, 'hello', ?, 'scheduled', '{}')",
  )
    .bind(crypto.randomUUID(), organizationId, wf!.id, workflowId)
    .run();
}

const runRow = (workflowId: string) =>
  env.DB.prepare("SELECT status, output, error, temporal_run_id FROM runs WHERE temporal_workflow_id = ?").bind(workflowId).first<{
    status: string;
    output: string | null;
    error: string | null;
    temporal_run_id: string | null;
  }>();

const finished = (status: string, output: unknown, error: string | null) => ({
  sourceKey: "run:r1:finished",
  type: "run.finished",
  at: new Date().toISOString(),
  data: { runId: "r1", status, output, error },
});

describe("internal routes (host → edge)", () => {
  let org: Awaited<ReturnType<typeof seedOrganization>>;
  beforeAll(async () => {
    org = await seedOrganization();
    await seedCatalog();
    await insertRun(org.organizationId, WORKFLOW_ID);
  });

  it("refuses unsigned, wrongly signed and stale requests with 401", async () => {
    const unsigned = await call("/internal/catalog", { method: "POST", body: "{}" });
    expect(unsigned.status).toBe(401);
    expect(((await unsigned.json()) as ErrorBody).error.code).toBe("unauthorized");
    expect((await signedPost("/internal/catalog", { workflows: [] }, "wrong-secret")).status).toBe(401);
    const tenMinutesAgo = Date.now() - 10 * 60_000;
    expect((await signedPost("/internal/catalog", { workflows: [] }, undefined, tenMinutesAgo)).status).toBe(401);
  });

  it("refuses a request without a fresh signature before reading its body (a body that never ends is not waited for)", async () => {
    const stale = await signRequest(TEST_HOST_SECRET, "POST", "/internal/run-events", "{}", Date.now() - 10 * 60_000);
    for (const headers of [{}, stale]) {
      const res = await call("/internal/run-events", {
        method: "POST",
        headers: { ...headers, "content-type": "application/json" },
        body: stalledBody(),
      });
      expect(res.status).toBe(401);
      expect(((await res.json()) as ErrorBody).error.message).toMatch(/missing signature|stale signature/);
    }
  }, 5_000);

  it("refuses a fresh signature made without the secret before reading its body (no 32 MiB read and hashed for a forger)", async () => {
    const forged = await signRequest("not-the-host-secret", "POST", "/internal/run-events", "{}");
    const res = await call("/internal/run-events", {
      method: "POST",
      headers: { ...forged, "content-type": "application/json" },
      body: stalledBody(),
    });
    expect(res.status).toBe(401);
    expect(((await res.json()) as ErrorBody).error.message).toMatch(/bad signature/);
  }, 5_000);

  it("refuses a body over MAX_SIGNED_BODY_BYTES with 413, reading no more of it than that", { timeout: 20_000 }, async () => {
    const headers = await signRequest(TEST_HOST_SECRET, "POST", "/internal/run-events", "{}");
    // Declared (Content-Length): refused before a byte is read.
    const declared = await call("/internal/run-events", {
      method: "POST",
      headers: { ...headers, "content-type": "application/json" },
      body: "x".repeat(MAX_SIGNED_BODY_BYTES + 1),
    });
    expect(declared.status).toBe(413);
    expect(((await declared.json()) as ErrorBody).error.code).toBe("payload_too_large");
    // Streamed without a length, and never ending: read up to the limit, then refused.
    const endless = endlessBody();
    const streamed = await call("/internal/run-events", {
      method: "POST",
      headers: { ...(await signRequest(TEST_HOST_SECRET, "POST", "/internal/run-events", "{}")), "content-type": "application/json" },
      body: endless.body,
    });
    expect(streamed.status).toBe(413);
    expect(((await streamed.json()) as ErrorBody).error.code).toBe("payload_too_large");
    expect(endless.pulled()).toBeLessThan(MAX_SIGNED_BODY_BYTES * 2);
  });

  it("refuses a replayed request: the same signed request works once", async () => {
    const text = JSON.stringify({ workflows: catalogEntries() });
    const headers = { ...(await signRequest(TEST_HOST_SECRET, "POST", "/internal/catalog", text)), "content-type": "application/json" };
    const send = () => call("/internal/catalog", { method: "POST", headers, body: text });
    expect((await send()).status).toBe(200);
    const replay = await send();
    expect(replay.status).toBe(401);
    expect(((await replay.json()) as ErrorBody).error.message).toMatch(/replayed/);
  });

  it("refuses a replayed run-event push (claimed by the run's RunStream)", async () => {
    const workflowId = `hello-${crypto.randomUUID()}`;
    await insertRun(org.organizationId, workflowId);
    const path = `/internal/runs/${workflowId}/events`;
    const text = JSON.stringify({ events: [finished("completed", { ok: 1 }, null)] });
    const headers = { ...(await signRequest(TEST_HOST_SECRET, "POST", path, text)), "content-type": "application/json" };
    const send = () => call(path, { method: "POST", headers, body: text });
    expect((await send()).status).toBe(200);
    const replay = await send();
    expect(replay.status).toBe(401);
    expect(((await replay.json()) as ErrorBody).error.message).toMatch(/replayed/);
    // A new signature for the same events is a retry, not a replay: accepted, as a duplicate.
    expect(await (await signedPost(path, JSON.parse(text))).json()).toEqual({ accepted: 0, duplicates: 1 });
  });

  it("accepts a request signed with the secret being rotated out", async () => {
    const res = await signedPost("/internal/catalog", { workflows: catalogEntries() }, "edge-test-old-secret");
    expect(res.status).toBe(200);
  });

  it("publishing the catalog replaces the code workflows and unpublishes dropped ones", async () => {
    const [first] = catalogEntries();
    const res = await signedPost("/internal/catalog", { workflows: [first] });
    expect(await res.json()).toEqual({ published: 1 });
    const published = await env.DB.prepare("SELECT name FROM workflows WHERE organization_id IS NULL AND published = 1").all<{
      name: string;
    }>();
    expect(published.results.map((r) => r.name)).toEqual([first!.name]);
    await seedCatalog();
  });

  it("run events update the run row through its RunStream, once per source key", async () => {
    const started = { sourceKey: "run:r1:started", type: "run.started", at: new Date().toISOString(), data: { runId: "r1" } };
    const first = await signedPost(`/internal/runs/${WORKFLOW_ID}/events`, { events: [started] });
    expect(await first.json()).toEqual({ accepted: 1, duplicates: 0 });
    expect((await runRow(WORKFLOW_ID))?.status).toBe("running");

    const done = finished("completed", { greeting: "Hello, Ada!" }, null);
    expect(await (await signedPost(`/internal/runs/${WORKFLOW_ID}/events`, { events: [done, started] })).json()).toEqual({
      accepted: 1,
      duplicates: 1,
    });
    const row = await runRow(WORKFLOW_ID);
    expect(row?.status).toBe("completed");
    expect(JSON.parse(row!.output!)).toEqual({ greeting: "Hello, Ada!" });

    // A redelivered finish with other content is a duplicate: it changes nothing.
    const replay = finished("failed", null, "should not appear");
    expect(await (await signedPost(`/internal/runs/${WORKFLOW_ID}/events`, { events: [replay] })).json()).toEqual({
      accepted: 0,
      duplicates: 1,
    });
    expect((await runRow(WORKFLOW_ID))?.status).toBe("completed");

    const log = await runInDurableObject(runStream(env, WORKFLOW_ID), (instance: RunStream) => instance.events());
    expect(log.map((e) => e.sourceKey)).toEqual(["run:r1:started", "run:r1:finished"]);
  });

  it("attributes add up into the run row's cost and token totals, once each", async () => {
    const attribute = {
      sourceKey: "attribute:r1:3:1:1",
      type: "attribute",
      at: new Date().toISOString(),
      data: {
        runId: "r1",
        attribute: {
          type: "llm:usage",
          modelId: "anthropic/claude-3-5-sonnet",
          total: 0.0084,
          tokensUsed: 1200,
          usage: [
            { type: "input", ppm: 3, amount: 800, total: 0.0024 },
            { type: "output", ppm: 15, amount: 400, total: 0.006 },
          ],
        },
      },
    };
    await signedPost(`/internal/runs/${WORKFLOW_ID}/events`, { events: [attribute] });
    await signedPost(`/internal/runs/${WORKFLOW_ID}/events`, { events: [attribute] }); // redelivered
    const totals = await env.DB.prepare(
      "SELECT cost_total, tokens_input, tokens_output, tokens_total FROM runs WHERE temporal_workflow_id = ?",
    )
      .bind(WORKFLOW_ID)
      .first();
    expect(totals).toEqual({ cost_total: 0.0084, tokens_input: 800, tokens_output: 400, tokens_total: 1200 });
  });

  it("a late run.started does not move a finished run back to running", async () => {
    const late = { sourceKey: "run:r1:started-again", type: "run.started", at: new Date().toISOString(), data: { runId: "r1" } };
    await signedPost(`/internal/runs/${WORKFLOW_ID}/events`, { events: [late] });
    expect((await runRow(WORKFLOW_ID))?.status).toBe("completed");
  });

  it("rejects malformed event batches with 400", async () => {
    const res = await signedPost(`/internal/runs/${WORKFLOW_ID}/events`, { events: [{ type: "run.finished" }] });
    expect(res.status).toBe(400);
    expect(((await res.json()) as ErrorBody).error.code).toBe("invalid_request");
  });

  it("a push carrying caller data at the callers' depth limit inside its envelope is accepted; a pathological one is 400 json_too_deep", async () => {
    const workflowId = "hello-21111111-2222-4333-8444-555555555555";
    await insertRun(org.organizationId, workflowId);
    const nested = (depth: number): unknown => (depth === 0 ? "x" : [nested(depth - 1)]);
    // A workflow input 62 levels deep (the most a 64-deep start body holds) inside a history event's payloads.
    const deepInput = {
      sourceKey: "history:r9:1",
      type: "history",
      at: new Date().toISOString(),
      data: {
        runId: "r9",
        event: {
          eventId: "1",
          eventTime: null,
          eventType: "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED",
          attributes: {},
          payloads: { input: [nested(62)] },
        },
      },
    };
    expect((await signedPost(`/internal/runs/${workflowId}/events`, { events: [deepInput] })).status).toBe(200);
    const text = `{"events":[{"sourceKey":"s","type":"attribute","at":"now","data":{"x":${"[".repeat(2_000)}${"]".repeat(2_000)}}}]}`;
    const headers = await signRequest(TEST_HOST_SECRET, "POST", `/internal/runs/${workflowId}/events`, text);
    const res = await call(`/internal/runs/${workflowId}/events`, {
      method: "POST",
      headers: { ...headers, "content-type": "application/json" },
      body: text,
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as ErrorBody).error.code).toBe("json_too_deep");
  });
});
