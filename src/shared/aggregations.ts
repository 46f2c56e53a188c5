/**
 * Aggregations are derived from a run's attributes, never stored on their own, so the two cannot
 * disagree. Attribute shapes follow the Workflow API's result payload.
 */
import type { HttpAttribute, LlmUsageAttribute } from "./run-event-schema.ts";

/** `llm:usage` and `http:request`: their types are the run-event contract's (run-event-schema.ts). */
export type { HttpAttribute, LlmUsageAttribute };
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
  // The push route refuses attributes these sums cannot read (run-event-schema.ts); a log written
  // before it did may still hold one, which adds nothing rather than failing the run's projection.
  const n = (value: unknown) => (typeof value === "number" && Number.isFinite(value) ? value : 0);
  for (const attr of attributes) {
    cost += n(attr.total);
    if (attr.type === "llm:usage") {
      const llm = attr as LlmUsageAttribute;
      tokens += n(llm.tokensUsed);
      for (const u of Array.isArray(llm.usage) ? llm.usage : []) {
        if (u?.type === "input") input += n(u.amount);
        else if (u?.type === "output") output += n(u.amount);
      }
    } else if (attr.type === "http:request") {
      http += n((attr as HttpAttribute).count);
    }
  }
  return {
    cost: { total: roundMoney(cost) },
    tokens: { total: tokens, input, output },
    httpRequests: { total: http },
  };
}
