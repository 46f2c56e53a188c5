import { describe, expect, it } from "vitest";
import { resolveModel } from "../../host/llm/models.ts";
import { loadPrices, MAX_PRICE_PER_MILLION_TOKENS, usageAttribute } from "../../host/llm/pricing.ts";
import { aggregate } from "../../src/shared/aggregations.ts";
import { attributeSchema, MAX_ATTRIBUTE_NUMBER } from "../../src/shared/run-event-schema.ts";

describe("prices and llm:usage attributes", () => {
  const prices = loadPrices(undefined);

  it("computes the seed's shape from the price table", () => {
    // The Workflow API's own example: 800 input and 400 output tokens at 3 and 15 per million.
    expect(usageAttribute("anthropic/claude-3-5-sonnet", 800, 400, prices)).toEqual({
      type: "llm:usage",
      modelId: "anthropic/claude-3-5-sonnet",
      total: 0.0084,
      tokensUsed: 1200,
      usage: [
        { type: "input", ppm: 3, amount: 800, total: 0.0024 },
        { type: "output", ppm: 15, amount: 400, total: 0.006 },
      ],
    });
  });

  it("a model without a price costs 0 and says so", () => {
    const attr = usageAttribute("local/experimental", 10, 5, prices);
    expect(attr).toMatchObject({ total: 0, tokensUsed: 15, unpriced: true });
  });

  it("LLM_PRICES overrides and extends the table, and refuses malformed prices", () => {
    const custom = loadPrices(
      JSON.stringify({ "anthropic/claude-3-5-sonnet": { input: 1, output: 2 }, "local/experimental": { input: 10, output: 20 } }),
    );
    expect(usageAttribute("anthropic/claude-3-5-sonnet", 1_000_000, 1_000_000, custom).total).toBe(3);
    expect(usageAttribute("local/experimental", 100, 100, custom).total).toBeCloseTo(0.003, 12);
    expect(() => loadPrices(JSON.stringify({ "x/y": { input: "1" } }))).toThrow(/numeric/);
  });

  it("LLM_PRICES refuses a negative or infinite price when the host starts, not as every call of that model failing after it was paid for", () => {
    // A usage line with a negative or infinite total is one the edge refuses (run-event-schema.ts).
    for (const price of ['{"x/y": {"input": -1, "output": 2}}', '{"x/y": {"input": 1, "output": 1e400}}']) {
      expect(() => loadPrices(price), price).toThrow(/LLM_PRICES: x\/y needs numeric "input" and "output" of 0 or more/);
    }
    expect(loadPrices('{"x/y": {"input": 0, "output": 0}}')["x/y"]).toEqual({ input: 0, output: 0 });
  });

  it("LLM_PRICES refuses a finite price past MAX_PRICE_PER_MILLION_TOKENS at start: its usage lines (ppm, total) would be past what the edge takes, every call failing after it was paid for", () => {
    // 2e12 per million: a ppm the edge refuses (run-event-schema.ts, MAX_ATTRIBUTE_NUMBER).
    for (const price of ['{"x/y": {"input": 2e12, "output": 1}}', `{"x/y": {"input": 1, "output": ${MAX_PRICE_PER_MILLION_TOKENS * 2}}}`]) {
      expect(() => loadPrices(price), price).toThrow(/LLM_PRICES: x\/y needs numeric "input" and "output" of 0 or more, at most 1000000 /);
    }
    // The highest price, at the most tokens a provider is believed for (llm.ts), still makes an attribute the edge takes.
    const top = loadPrices(JSON.stringify({ "x/y": { input: MAX_PRICE_PER_MILLION_TOKENS, output: MAX_PRICE_PER_MILLION_TOKENS } }));
    const attribute = usageAttribute("x/y", MAX_ATTRIBUTE_NUMBER / 2, MAX_ATTRIBUTE_NUMBER / 2, top);
    expect(attributeSchema.safeParse(attribute).success).toBe(true);
  });

  it("aggregations are the sums of attributes", () => {
    const attrs = [
      usageAttribute("openai/gpt-4o-mini", 100, 50, prices),
      usageAttribute("openai/gpt-4o", 10, 20, prices),
      { type: "http:request" as const, method: "GET", url: "https://example.com", status: 200, count: 1, total: 0.001 },
    ];
    const agg = aggregate(attrs);
    expect(agg.tokens).toEqual({ total: 180, input: 110, output: 70 });
    expect(agg.httpRequests.total).toBe(1);
    expect(agg.cost.total).toBeCloseTo(
      attrs.reduce((s, a) => s + a.total, 0),
      12,
    );
  });

  it("routes providers without a key to the local server, and refuses unknown ids", () => {
    const config = { localBaseUrl: "http://127.0.0.1:1/v1" };
    expect(resolveModel("openai/gpt-4o", config).servedBy).toBe("local");
    expect(resolveModel("anthropic/claude-3-5-sonnet", config).servedBy).toBe("local");
    expect(resolveModel("openai/gpt-4o", { ...config, openaiApiKey: "sk-test" }).servedBy).toBe("openai");
    expect(() => resolveModel("gpt-4o", config)).toThrow(/provider\/model/);
    expect(() => resolveModel("mystery/model", config)).toThrow(/unknown provider/);
  });
});
