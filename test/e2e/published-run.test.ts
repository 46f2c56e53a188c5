/**
 * Published prompt workflows through the whole stack: admin API → POST /api/v1/run/{id} →
 * Temporal `run_prompt` → the local OpenAI-compatible server → credits settled by RunStream.
 */
import { inject } from "vitest";
import { describe, expect, it } from "vitest";
import { SEARCH_SOURCES } from "../../host/local-llm/server.ts";
import { readSse } from "../support/sse.ts";
import { admin, eventually, newOrganization, type Organization, postJson, queryD1, type ErrorBody } from "./helpers.ts";

type Org = Organization;
const newOrg = (options: { rateLimitPerMinute?: number; credits?: number } = {}) => newOrganization("e2e", options);

async function publishedWorkflow(org: Org, fields: Record<string, unknown> = {}): Promise<string> {
  const wf = await admin<{ id: string }>("POST", `/admin/v1/organizations/${org.id}/workflows`, {
    name: `story ${crypto.randomUUID().slice(0, 8)}`,
    template: "Write a short note about {{topic}} for {{audience}}.",
    model: "local/writer",
    maxOutputTokens: 64,
    ...fields,
  });
  await admin("POST", `/admin/v1/workflows/${wf.id}/publish`);
  return wf.id;
}

const run = (org: Org, workflowId: string, input: unknown) => postJson(`/api/v1/run/${workflowId}`, input, { key: org.key });
const input = { topic: "durable execution", audience: "new engineers" };

describe("published prompt workflows", () => {
  it("runs a template: the rendered prompt reaches the model, the text comes back, no citations without web search", async () => {
    const org = await newOrg();
    const workflowId = await publishedWorkflow(org);
    const res = await run(org, workflowId, input);
    expect(res.status).toBe(200);
    expect(res.headers.get("x-ratelimit-limit")).toBeTruthy();
    expect(res.headers.get("x-ratelimit-remaining")).toBeTruthy();
    const body = (await res.json()) as { success: boolean; result: string; citations?: string[] };
    expect(body.success).toBe(true);
    // The local server answers with the prompt's first words: the template was rendered.
    expect(body.result).toContain("(local/writer) In short: Write a short note about durable execution for new engineers.");
    expect(body).not.toHaveProperty("citations");
    const [row] = queryD1<{ status: string; input: string; workflow_id: string }>(
      `SELECT status, input, workflow_id FROM runs WHERE temporal_workflow_id = '${res.headers.get("x-run-id")}'`,
    );
    expect(row).toEqual({ status: "completed", input: JSON.stringify(input), workflow_id: workflowId });
  });

  it("with web search on, returns the sources the model cited", async () => {
    const org = await newOrg();
    const workflowId = await publishedWorkflow(org, { webSearch: true });
    const res = await run(org, workflowId, input);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { success: boolean; result: string; citations: string[] };
    expect(body.result).toContain("durable execution");
    expect(body.citations).toEqual(SEARCH_SOURCES.map((s) => s.url));
    const calls = ((await (await fetch(`${inject("localLlmUrl")}/_calls`)).json()) as { calls: Array<{ webSearch: boolean }> }).calls;
    expect(calls.some((c) => c.webSearch)).toBe(true);
  });

  it("streams the text as it is generated, then the same result as the blocking route", async () => {
    const org = await newOrg();
    const workflowId = await publishedWorkflow(org, { webSearch: true });
    const res = await postJson(`/api/v1/run/${workflowId}/stream`, input, { key: org.key });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/text\/event-stream/);
    const events: Array<{ event: string; data: unknown }> = [];
    for await (const message of readSse(res.body!)) events.push({ event: message.event, data: JSON.parse(message.data) });
    const texts = events.filter((e) => e.event === "text").map((e) => (e.data as { delta: string }).delta);
    expect(texts.length).toBeGreaterThan(0);
    const last = events.at(-1)!;
    expect(last.event).toBe("result");
    const result = last.data as { success: boolean; result: string; citations: string[] };
    expect(result.success).toBe(true);
    expect(texts.join("")).toBe(result.result);
    expect(result.citations).toEqual(SEARCH_SOURCES.map((s) => s.url));
    expect(events.findIndex((e) => e.event === "thinking")).toBeLessThan(events.findIndex((e) => e.event === "text"));
  });

  it("a run that outlives its limit ends with 504 run_timed_out, and is not charged", async () => {
    const org = await newOrg({ credits: 100_000 });
    const workflowId = await publishedWorkflow(org, { model: "local/slow-writer" });
    const started = Date.now();
    const res = await run(org, workflowId, input);
    expect(res.status).toBe(504);
    expect(((await res.json()) as ErrorBody).error.code).toBe("run_timed_out");
    expect(Date.now() - started).toBeLessThan(40_000);
    const credits = await eventually(async () => {
      const c = await admin<{ balance: number; reserved: number }>("GET", `/admin/v1/organizations/${org.id}/credits`);
      return c.reserved === 0 ? c : null;
    });
    expect(credits.balance).toBe(100_000);
  });

  it("a run that fails answers 500 run_failed with the reason", async () => {
    const org = await newOrg();
    const workflowId = await publishedWorkflow(org, { model: "compatible/not-configured" });
    const res = await run(org, workflowId, input);
    expect(res.status).toBe(500);
    const body = (await res.json()) as ErrorBody;
    expect(body.error.code).toBe("run_failed");
    expect(body.error.message).toMatch(/OPENAI_COMPATIBLE_BASE_URL/);
  });

  it("unpublishing takes a workflow off the API (404)", async () => {
    const org = await newOrg();
    const workflowId = await publishedWorkflow(org);
    await admin("POST", `/admin/v1/workflows/${workflowId}/unpublish`);
    const res = await run(org, workflowId, input);
    expect(res.status).toBe(404);
    expect(((await res.json()) as ErrorBody).error.code).toBe("workflow_not_found");
  });
});

describe("rate limits and credits through the stack", () => {
  it("a key limited to 5 a minute: 25 concurrent runs give exactly 5 results and 20 × 429 with Retry-After", async () => {
    const org = await newOrg({ rateLimitPerMinute: 5 });
    const workflowId = await publishedWorkflow(org);
    const responses = await Promise.all(Array.from({ length: 25 }, () => run(org, workflowId, input)));
    const ok = responses.filter((r) => r.status === 200);
    const limited = responses.filter((r) => r.status === 429);
    expect(ok).toHaveLength(5);
    expect(limited).toHaveLength(20);
    for (const res of ok) expect(((await res.json()) as { success: boolean }).success).toBe(true);
    for (const res of limited) {
      expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
      expect(((await res.json()) as ErrorBody).error.code).toBe("rate_limited");
    }
  });

  it("an organization with credits for about two runs gets two results, then 402; the ledger shows both charges", async () => {
    // Measure one run's usage on an unmetered organization (the local model is deterministic).
    const probe = await newOrg();
    const probeWorkflow = await publishedWorkflow(probe, { maxOutputTokens: 16 });
    const probeRun = await run(probe, probeWorkflow, input);
    expect(probeRun.status).toBe(200);
    const [{ tokens_total: usage }] = queryD1<{ tokens_total: number }>(
      `SELECT tokens_total FROM runs WHERE temporal_workflow_id = '${probeRun.headers.get("x-run-id")}'`,
    ) as [{ tokens_total: number }];
    expect(usage).toBeGreaterThan(0);
    // A run holds every byte of its prompt + 64 + maxOutputTokens before it starts.
    const prompt = "Write a short note about durable execution for new engineers.";
    const hold = new TextEncoder().encode(prompt).byteLength + 64 + 16;
    const balance = hold + usage + Math.floor(usage / 2);

    const org = await newOrg({ credits: balance });
    const workflowId = await publishedWorkflow(org, { maxOutputTokens: 16 });
    const first = await run(org, workflowId, input);
    const second = await run(org, workflowId, input);
    const third = await run(org, workflowId, input);
    expect([first.status, second.status, third.status]).toEqual([200, 200, 402]);
    const refused = (await third.json()) as ErrorBody;
    expect(refused.error.code).toBe("insufficient_credits");

    const credits = await admin<{ balance: number; reserved: number; ledger: Array<{ kind: string; amount: number }> }>(
      "GET",
      `/admin/v1/organizations/${org.id}/credits`,
    );
    expect(credits.balance).toBe(balance - 2 * usage);
    expect(credits.reserved).toBe(0);
    expect(credits.ledger.map((e) => [e.kind, e.amount])).toEqual([
      ["charge", -usage],
      ["charge", -usage],
      ["grant", balance],
    ]);
  });

  it("concurrent runs cannot overdraw: credits for two holds admit exactly two of ten", async () => {
    const prompt = "Write a short note about durable execution for new engineers.";
    const hold = new TextEncoder().encode(prompt).byteLength + 64 + 64;
    const org = await newOrg({ credits: 3 * hold - 1 });
    const workflowId = await publishedWorkflow(org);
    const responses = await Promise.all(Array.from({ length: 10 }, () => run(org, workflowId, input)));
    const statuses = responses.map((r) => r.status).sort();
    expect(statuses.filter((s) => s === 200)).toHaveLength(2);
    expect(statuses.filter((s) => s === 402)).toHaveLength(8);
    const credits = await admin<{ balance: number; reserved: number }>("GET", `/admin/v1/organizations/${org.id}/credits`);
    expect(credits.reserved).toBe(0);
    expect(credits.balance).toBeGreaterThanOrEqual(0);
  });

  it("the Workflow API's runs are charged from the same balance", async () => {
    const org = await newOrg({ credits: 50_000 });
    const res = await postJson(
      "/workflow/run",
      { workflowName: "summarize_url", input: { url: `${inject("localLlmUrl")}/pages/durable-execution` } },
      { key: org.key },
    );
    expect(res.status).toBe(200);
    const result = (await res.json()) as { aggregations: { tokens: { total: number } } };
    const tokens = result.aggregations.tokens.total;
    expect(tokens).toBeGreaterThan(0);
    const credits = await eventually(async () => {
      const c = await admin<{ balance: number; reserved: number }>("GET", `/admin/v1/organizations/${org.id}/credits`);
      return c.reserved === 0 ? c : null;
    });
    expect(credits.balance).toBe(50_000 - tokens);
  });
});
