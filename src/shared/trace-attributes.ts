/**
 * A finished run's cost and token usage summed over its trace tree, in the shape of Output's
 * `GET /workflow/:id/trace-attributes`: cost in three buckets by the kind of node that spent it
 * (`cost:llm:request`, `cost:http:request`, `other`, always in that order) and token totals of
 * the LLM nodes. Nodes are read in both forms a trace may hold: Output's (`attributes.cost.total`,
 * `attributes.token_usage`) and ours (durable-objects/trace.ts: an `llm` node's `llm:usage`, an
 * `http` node's `http:request:cost`, another attribute's `total`).
 */
import type { TraceNode } from "../../durable-objects/trace.ts";
import { type LlmUsageAttribute, roundMoney } from "./aggregations.ts";

export const COST_BUCKETS = ["cost:llm:request", "cost:http:request", "other"] as const;
type CostBucket = (typeof COST_BUCKETS)[number];

export interface TokenUsage {
  inputTokens: number;
  outputTokens: number;
  cachedInputTokens: number;
  totalTokens: number;
}

export interface TraceAttributes {
  cost: { total: number; components: Array<{ name: CostBucket; value: number }> };
  tokenUsage: TokenUsage;
}

const isNumber = (value: unknown): value is number => typeof value === "number" && Number.isFinite(value);
const isObject = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null;

const bucketOf = (kind: string): CostBucket => (kind === "llm" ? "cost:llm:request" : kind === "http" ? "cost:http:request" : "other");

/** What a node spent: Output's `attributes.cost.total`, else the `total` of its one attribute of ours. */
function costOf(node: TraceNode): number {
  const attributes = node.attributes;
  if (!isObject(attributes)) return 0;
  if (isObject(attributes.cost) && isNumber(attributes.cost.total)) return attributes.cost.total;
  let sum = 0;
  for (const attr of Object.values(attributes)) if (isObject(attr) && isNumber(attr.total)) sum += attr.total;
  return sum;
}

/** An LLM node's tokens: Output's `attributes.token_usage`, else our `llm:usage` attribute. */
function tokensOf(node: TraceNode): Partial<TokenUsage> | null {
  const attributes = isObject(node.attributes) ? node.attributes : {};
  if (isObject(attributes.token_usage)) return attributes.token_usage as Partial<TokenUsage>;
  const usage = attributes["llm:usage"] as LlmUsageAttribute | undefined;
  if (!isObject(usage) || !Array.isArray(usage.usage)) return null;
  const amountOf = (type: string) => usage.usage.filter((u) => u?.type === type && isNumber(u.amount)).reduce((s, u) => s + u.amount, 0);
  return {
    inputTokens: amountOf("input"),
    outputTokens: amountOf("output"),
    cachedInputTokens: 0,
    totalTokens: isNumber(usage.tokensUsed) ? usage.tokensUsed : amountOf("input") + amountOf("output"),
  };
}

export function traceAttributes(root: TraceNode): TraceAttributes {
  const spent = new Map<CostBucket, number>(COST_BUCKETS.map((name) => [name, 0]));
  const tokenUsage: TokenUsage = { inputTokens: 0, outputTokens: 0, cachedInputTokens: 0, totalTokens: 0 };
  // A trace is a tree a few levels deep (workflow, steps, their calls); a stack, not recursion, all the same.
  const stack: unknown[] = [root];
  while (stack.length > 0) {
    const node = stack.pop();
    if (!isObject(node)) continue;
    const traceNode = node as TraceNode;
    const bucket = bucketOf(String(traceNode.kind));
    spent.set(bucket, spent.get(bucket)! + costOf(traceNode));
    if (traceNode.kind === "llm") {
      const tokens = tokensOf(traceNode);
      for (const key of Object.keys(tokenUsage) as Array<keyof TokenUsage>) if (isNumber(tokens?.[key])) tokenUsage[key] += tokens[key];
    }
    if (Array.isArray(traceNode.children)) for (let i = traceNode.children.length - 1; i >= 0; i--) stack.push(traceNode.children[i]);
  }
  const components = COST_BUCKETS.map((name) => ({ name, value: roundMoney(spent.get(name)!) }));
  return { cost: { total: roundMoney(components.reduce((sum, c) => sum + c.value, 0)), components }, tokenUsage };
}
