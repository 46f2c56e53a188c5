import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { describe, expect, inject, it } from "vitest";
import type { LlmUsageAttribute } from "../../src/shared/aggregations.ts";
import { readSse } from "../support/sse.ts";
import { api, eventually, postJson, queryD1, type ResultPayload } from "./helpers.ts";

// The price table is data: the test reads the same file a reader would.
const prices = JSON.parse(readFileSync(resolve(import.meta.dirname, "../../host/llm/prices.json"), "utf8")) as Record<
  string,
  { input: number; output: number }
>;

interface ServedCall {
  model: string;
  promptTokens: number;
  completionTokens: number;
}
const servedCalls = async (): Promise<ServedCall[]> =>
  ((await (await fetch(`${inject("localLlmUrl")}/_calls`)).json()) as { calls: ServedCall[] }).calls;

/** Runs a workflow and returns its result with the LLM calls the local server served for it. */
async function runMeasured(workflowName: string, input: unknown) {
  const before = (await servedCalls()).length;
  const res = await postJson("/workflow/run", { workflowName, input });
  expect(res.status).toBe(200);
  const result = (await res.json()) as ResultPayload & { streamToken: string };
  return { result, calls: (await servedCalls()).slice(before) };
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

describe("cost-aware results", () => {
  it("company_research: attributes are the local server's usage times the price table; aggregations are their sums", async () => {
    const { result, calls } = await runMeasured("company_research", { domain: "acme.com" });
    expect(result.status).toBe("completed");
    expect(calls.length).toBe(3);
    const llm = result.attributes as LlmUsageAttribute[];
    expect(llm.map((a) => a.modelId)).toEqual(calls.map((c) => c.model));

    llm.forEach((attr, i) => {
      const call = calls[i]!;
      const price = prices[call.model]!;
      expect(attr.type).toBe("llm:usage");
      expect(attr.usage).toEqual([
        { type: "input", ppm: price.input, amount: call.promptTokens, total: expect.closeTo((call.promptTokens * price.input) / 1e6, 12) },
        {
          type: "output",
          ppm: price.output,
          amount: call.completionTokens,
          total: expect.closeTo((call.completionTokens * price.output) / 1e6, 12),
        },
      ]);
      expect(attr.tokensUsed).toBe(call.promptTokens + call.completionTokens);
      expect(attr.total).toBeCloseTo((call.promptTokens * price.input + call.completionTokens * price.output) / 1e6, 12);
      expect(attr.unpriced).toBeUndefined();
    });

    expect(result.aggregations.cost.total).toBeCloseTo(sum(llm.map((a) => a.total)), 12);
    expect(result.aggregations.tokens).toEqual({
      total: sum(calls.map((c) => c.promptTokens + c.completionTokens)),
      input: sum(calls.map((c) => c.promptTokens)),
      output: sum(calls.map((c) => c.completionTokens)),
    });
    expect(result.aggregations.httpRequests.total).toBe(0);

    // The trace log shows each step's LLM usage, on an `llm` node under the step (where Output's CLI `cost` reads it).
    type Node = { kind: string; name: string; attributes?: Record<string, unknown>; children: Node[] };
    const trace = await eventually(async () => {
      const r = await api(`/workflow/${result.workflowId}/trace-log`);
      return r.status === 200 && ((await r.json()) as { source: string; data: Node });
    });
    expect(trace.source).toBe("remote");
    expect(trace.data.children.map((s) => [s.kind, s.name])).toEqual([
      ["step", "askModel"],
      ["step", "askModel"],
      ["step", "askModel"],
    ]);
    expect(trace.data.children.map((s) => s.children.map((n) => [n.kind, n.attributes?.["llm:usage"]]))).toEqual(
      llm.map((a) => [["llm", a]]),
    );

    // The D1 row keeps the totals for listing and billing.
    const [row] = queryD1<{ cost_total: number; tokens_total: number; tokens_input: number; tokens_output: number }>(
      `SELECT cost_total, tokens_total, tokens_input, tokens_output FROM runs WHERE temporal_workflow_id = '${result.workflowId}'`,
    );
    expect(row!.cost_total).toBeCloseTo(result.aggregations.cost.total, 12);
    expect([row!.tokens_total, row!.tokens_input, row!.tokens_output]).toEqual([
      result.aggregations.tokens.total,
      result.aggregations.tokens.input,
      result.aggregations.tokens.output,
    ]);
  });

  it("the same run's stream shows thinking text before the result", async () => {
    const { result } = await runMeasured("company_research", { domain: "example.org" });
    const stream = await api(`/workflow/${result.workflowId}/history/stream?token=${result.streamToken}`, { key: null });
    const frames: Array<{ event: string; data: unknown }> = [];
    for await (const message of readSse(stream.body!)) {
      frames.push({ event: message.event, data: JSON.parse(message.data) });
      if (message.event === "done") break;
    }
    const thinking = frames.filter((f) => f.event === "thinking").map((f) => f.data as { stepName: string; text: string; attempt: number });
    expect(thinking.length).toBeGreaterThanOrEqual(3);
    expect(thinking.every((t) => t.stepName === "askModel" && t.attempt === 1)).toBe(true);
    expect(thinking.map((t) => t.text).join("")).toContain("Reading the request: Describe the company behind example.org");
    const firstThinking = frames.findIndex((f) => f.event === "thinking");
    const completed = frames.findIndex(
      (f) =>
        f.event === "history" &&
        (f.data as Array<{ eventTypeName: string }>).some((e) => e.eventTypeName === "WORKFLOW_EXECUTION_COMPLETED"),
    );
    expect(firstThinking).toBeGreaterThan(-1);
    expect(firstThinking).toBeLessThan(completed);
  });

  it("summarize_url records its HTTP request and LLM usage; a failing run keeps them beside its error", async () => {
    const url = `${inject("localLlmUrl")}/pages/durable-execution`;
    const ok = await runMeasured("summarize_url", { url });
    expect(ok.result.status).toBe("completed");
    expect((ok.result.output as { title: string }).title).toBe("Durable execution");
    expect(ok.result.attributes.map((a) => (a as { type: string }).type)).toEqual(["http:request", "llm:usage"]);
    expect(ok.result.aggregations.httpRequests.total).toBe(1);

    const failed = await runMeasured("summarize_url", { url, maxSummaryWords: 1 });
    expect(failed.result.status).toBe("failed");
    expect(failed.result.error).toMatch(/more than the 1 allowed/);
    expect(failed.result.output).toBeNull();
    expect(failed.result.attributes).toHaveLength(2);
    expect(failed.result.aggregations.httpRequests.total).toBe(1);
    expect(failed.result.aggregations.tokens.total).toBe(failed.calls[0]!.promptTokens + failed.calls[0]!.completionTokens);
    expect(failed.result.aggregations.cost.total).toBeGreaterThan(0);
  });

  it("a page that answers 404 fails the run at once, with the request counted", async () => {
    const { result } = await runMeasured("summarize_url", { url: `${inject("localLlmUrl")}/pages/missing` });
    expect(result.status).toBe("failed");
    expect(result.error).toMatch(/answered 404/);
    expect(result.aggregations.httpRequests.total).toBe(1);
    expect(result.aggregations.tokens.total).toBe(0);
  });
});

describe("security: summarize_url and the SSRF guard", () => {
  // The e2e stack allows the local LLM server's port only (OUTBOUND_HTTP_ALLOW); the host's own
  // control API listens two ports below it, on the same loopback address.
  const hostPort = () => Number(new URL(inject("localLlmUrl")).port) - 2;

  it("the host's own /health is refused with url_not_allowed: no body in the result or the trace-log, no request made", async () => {
    for (const url of [
      `http://127.0.0.1:${hostPort()}/health`,
      `http://localhost:${hostPort()}/health`,
      `http://2130706433:${hostPort()}/health`,
    ]) {
      const { result } = await runMeasured("summarize_url", { url });
      expect(result.status).toBe("failed");
      expect(result.error).toMatch(/url_not_allowed/);
      expect(result.output).toBeNull();
      expect(result.aggregations.httpRequests.total).toBe(0);
      expect(JSON.stringify(result)).not.toMatch(/"ok":true|\\"ok\\":true/);
      const trace = await eventually(async () => {
        const r = await api(`/workflow/${result.workflowId}/trace-log`);
        return r.status === 200 && (await r.text());
      });
      expect(trace).toMatch(/url_not_allowed/);
      expect(trace).not.toMatch(/"ok":true|\\"ok\\":true/);
    }
  });

  it("a page on an allowed address that redirects to the host is refused at the redirect", async () => {
    const to = `http://127.0.0.1:${hostPort()}/health`;
    const { result } = await runMeasured("summarize_url", { url: `${inject("localLlmUrl")}/pages/redirect?to=${encodeURIComponent(to)}` });
    expect(result.status).toBe("failed");
    expect(result.error).toMatch(/url_not_allowed/);
    expect(JSON.stringify(result)).not.toMatch(/"ok":true|\\"ok\\":true/);
  });
});
