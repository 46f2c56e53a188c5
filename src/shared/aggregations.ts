/**
 * Aggregations are derived from a run's attributes, never stored on their own, so the two cannot
 * disagree. Attribute shapes follow the Workflow API's result payload.
 */
export interface LlmUsageAttribute {
  type: "llm:usage";
  modelId: string;
  total: number;
  tokensUsed: number;
  usage: Array<{ type: "input" | "output" | string; ppm: number; amount: number; total: number }>;
  /** Present when the price table has no entry for the model: it then costs 0. */
  unpriced?: true;
}
export interface HttpAttribute {
  type: "http:request";
  method: string;
  url: string;
  status: number | null;
  count: number;
  total: number;
}
export type Attribute = LlmUsageAttribute | HttpAttribute | { type: string; total?: number };

export interface Aggregations {
  cost: { total: number };
  tokens: { total: number; input: number; output: number };
  httpRequests: { total: number };
}

/** Sums money in micro-units so that 0.1 + 0.2 stays 0.3 (also trace-attributes.ts's sums). */
export const roundMoney = (n: number) => Math.round(n * 1e9) / 1e9;

export function aggregate(attributes: readonly Attribute[]): Aggregations {
  let cost = 0;
  let input = 0;
  let output = 0;
  let tokens = 0;
  let http = 0;
  for (const attr of attributes) {
    if (typeof attr.total === "number") cost += attr.total;
    if (attr.type === "llm:usage") {
      const llm = attr as LlmUsageAttribute;
      tokens += llm.tokensUsed;
      for (const u of llm.usage) {
        if (u.type === "input") input += u.amount;
        else if (u.type === "output") output += u.amount;
      }
    } else if (attr.type === "http:request") {
      http += (attr as HttpAttribute).count;
    }
  }
  return {
    cost: { total: roundMoney(cost) },
    tokens: { total: tokens, input, output },
    httpRequests: { total: http },
  };
}
