/**
 * Prices are data (host/llm/prices.json, overridable with LLM_PRICES), and the `llm:usage`
 * attribute is computed from them exactly in the Workflow API's shape.
 */
import { readFileSync } from "node:fs";
import type { LlmUsageAttribute } from "../../src/shared/aggregations.ts";
import { MAX_ATTRIBUTE_NUMBER } from "../../src/shared/run-event-schema.ts";

export interface ModelPrice {
  /** USD per million input tokens. */
  input: number;
  /** USD per million output tokens. */
  output: number;
}
export type PriceTable = Record<string, ModelPrice>;

const bundled = JSON.parse(readFileSync(new URL("./prices.json", import.meta.url), "utf8")) as Record<string, unknown>;

/**
 * The highest price LLM_PRICES may set, in USD per million tokens ($1 a token, far past any
 * model's): with each side's tokens at most MAX_ATTRIBUTE_NUMBER / 2 (llm.ts believes no more),
 * a call's total stays within MAX_ATTRIBUTE_NUMBER, the most the edge takes in an attribute.
 */
export const MAX_PRICE_PER_MILLION_TOKENS = MAX_ATTRIBUTE_NUMBER / 1_000_000;

const isPrice = (n: unknown) => typeof n === "number" && Number.isFinite(n) && n >= 0 && n <= MAX_PRICE_PER_MILLION_TOKENS;

export function loadPrices(override: string | undefined): PriceTable {
  const table: PriceTable = {};
  for (const [model, price] of Object.entries(bundled)) if (!model.startsWith("$")) table[model] = price as ModelPrice;
  if (override) {
    const parsed = JSON.parse(override) as PriceTable;
    for (const [model, price] of Object.entries(parsed)) {
      // A negative price, one past MAX_PRICE_PER_MILLION_TOKENS (or 1e400, which JSON reads as
      // Infinity) makes usage lines the edge refuses: every call of the model would fail after it
      // was paid for. Refused at start.
      if (!isPrice(price?.input) || !isPrice(price?.output)) {
        throw new Error(
          `LLM_PRICES: ${model} needs numeric "input" and "output" of 0 or more, at most ${MAX_PRICE_PER_MILLION_TOKENS} (USD per million tokens)`,
        );
      }
      table[model] = price;
    }
  }
  return table;
}

/** Money is rounded to 1e-10 USD so that float noise never shows in results. */
const money = (n: number) => Math.round(n * 1e10) / 1e10;

/**
 * `llm:usage` as the host records it. `estimated`: the provider reported no token counts, so they
 * were estimated from the text (host/activities/llm.ts); the edge keeps an attribute's other keys.
 */
export type UsageAttribute = LlmUsageAttribute & { estimated?: true };

export function usageAttribute(
  modelId: string,
  inputTokens: number,
  outputTokens: number,
  prices: PriceTable,
  options: { estimated?: boolean } = {},
): UsageAttribute {
  const price = prices[modelId];
  const line = (type: "input" | "output", amount: number, ppm: number) => ({ type, ppm, amount, total: money((amount * ppm) / 1_000_000) });
  const usage = [line("input", inputTokens, price?.input ?? 0), line("output", outputTokens, price?.output ?? 0)];
  return {
    type: "llm:usage",
    modelId,
    total: money(usage.reduce((sum, u) => sum + u.total, 0)),
    tokensUsed: inputTokens + outputTokens,
    usage,
    ...(price ? {} : { unpriced: true }),
    ...(options.estimated ? { estimated: true } : {}),
  };
}
