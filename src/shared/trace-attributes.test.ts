/**
 * traceAttributes() on its own: the sums `GET /workflow/:id/trace-attributes` answers, from trace
 * nodes in our form (durable-objects/trace.ts) and in Output's, and from trees that are not what
 * a trace should be. The route's own cases are in test/edge/output-compat-history.test.ts.
 */
import { describe, expect, it } from "vitest";
import type { TraceNode } from "../../durable-objects/trace.ts";
import { traceAttributes } from "./trace-attributes.ts";

const node = (kind: string, attributes: Record<string, unknown> = {}, children: unknown[] = []) =>
  ({ id: kind, kind, name: kind, phase: "end", status: "completed", startedAt: null, endedAt: null, attributes, children }) as TraceNode;

describe("traceAttributes", () => {
  it("happy: our nodes (llm:usage, http:request:cost, another attribute's total) and Output's (cost, token_usage) sum into the three buckets", () => {
    const ours = node("step", {}, [
      node("llm", {
        "llm:usage": {
          type: "llm:usage",
          modelId: "m",
          total: 0.1,
          tokensUsed: 7,
          usage: [
            { type: "input", ppm: 1, amount: 3, total: 0.05 },
            { type: "output", ppm: 1, amount: 4, total: 0.05 },
          ],
        },
      }),
      node("http", { "http:request:cost": { type: "http:request:cost", total: 0.2 } }),
      node("search:query", { "search:query": { type: "search:query", total: 0.3 } }),
    ]);
    const outputs = node("step", {}, [
      node("llm", { cost: { total: 0.4 }, token_usage: { inputTokens: 1, outputTokens: 2, cachedInputTokens: 5, totalTokens: 8 } }),
      node("http", { cost: { total: 0.5 } }),
    ]);
    expect(traceAttributes(node("workflow", {}, [ours, outputs]))).toEqual({
      cost: {
        total: 1.5,
        components: [
          { name: "cost:llm:request", value: 0.5 },
          { name: "cost:http:request", value: 0.7 },
          { name: "other", value: 0.3 },
        ],
      },
      tokenUsage: { inputTokens: 4, outputTokens: 6, cachedInputTokens: 5, totalTokens: 15 },
    });
  });

  it("a run that spent nothing has the three buckets at 0, in their order", () => {
    expect(traceAttributes(node("workflow"))).toEqual({
      cost: {
        total: 0,
        components: [
          { name: "cost:llm:request", value: 0 },
          { name: "cost:http:request", value: 0 },
          { name: "other", value: 0 },
        ],
      },
      tokenUsage: { inputTokens: 0, outputTokens: 0, cachedInputTokens: 0, totalTokens: 0 },
    });
  });

  it("security: strings, NaN and Infinity count nothing; null nodes, children that are no array and a tree 100,000 deep do not throw; a __proto__ key is a name like any other", () => {
    let deep = node("llm", { cost: { total: 1 } });
    for (let i = 0; i < 100_000; i++) deep = node("step", {}, [deep]);
    const odd = node("workflow", JSON.parse('{"__proto__":{"total":9}}'), [
      null,
      "text",
      node("llm", { cost: { total: "5" }, token_usage: { inputTokens: "3", totalTokens: Number.NaN } }),
      { ...node("http", { cost: { total: Number.POSITIVE_INFINITY } }), children: "none" },
      deep,
    ]);
    const answer = traceAttributes(odd);
    expect(answer.cost.components).toEqual([
      { name: "cost:llm:request", value: 1 },
      { name: "cost:http:request", value: 0 },
      { name: "other", value: 9 },
    ]);
    expect(answer.tokenUsage).toEqual({ inputTokens: 0, outputTokens: 0, cachedInputTokens: 0, totalTokens: 0 });
    expect(({} as Record<string, unknown>).total).toBeUndefined();
  });
});
