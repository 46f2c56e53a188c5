/**
 * LLM examples. `summarize_url` fetches a page (one recorded HTTP request) and summarizes it in
 * one LLM step; `company_research` asks several models in sequence. Their results carry `llm:usage`
 * and `http:request` attributes and the aggregations derived from them.
 */
import { proxyActivities } from "@temporalio/workflow";
import type * as activities from "../activities/index.ts";
import { OUTSIDE_CALL_HEARTBEAT_TIMEOUT } from "./step-timeouts.ts";

const steps = proxyActivities<typeof activities>({
  startToCloseTimeout: "5 minutes",
  heartbeatTimeout: OUTSIDE_CALL_HEARTBEAT_TIMEOUT,
  retry: { maximumAttempts: 3, initialInterval: "2 seconds" },
});

export const SUMMARY_MODEL = "openai/gpt-4o-mini";
export const RESEARCH_MODELS = {
  profile: "anthropic/claude-3-5-sonnet",
  market: "openai/gpt-4o-mini",
  brief: "openai/gpt-4o",
} as const;

export async function summarize_url(input: {
  url: string;
  maxSummaryWords?: number;
}): Promise<{ url: string; finalUrl: string; title: string | null; summary: string }> {
  const page = await steps.fetchPageText(input.url);
  const { text: summary } = await steps.askModel({
    modelId: SUMMARY_MODEL,
    system: "You summarize web pages in three sentences.",
    prompt: `Summarize this page: ${page.text}`,
  });
  if (input.maxSummaryWords !== undefined) await steps.checkSummaryLength(summary, input.maxSummaryWords);
  // `url` is the one asked for; `finalUrl` the page read, after redirects (what the summary is of).
  return { url: page.url, finalUrl: page.finalUrl, title: page.title, summary };
}

export async function company_research(input: {
  domain: string;
}): Promise<{ domain: string; profile: string; market: string; brief: string }> {
  const profile = await steps.askModel({
    modelId: RESEARCH_MODELS.profile,
    prompt: `Describe the company behind ${input.domain}: what it sells and to whom.`,
  });
  const market = await steps.askModel({
    modelId: RESEARCH_MODELS.market,
    prompt: `Name the main competitors of ${input.domain} given this profile: ${profile.text}`,
  });
  const brief = await steps.askModel({
    modelId: RESEARCH_MODELS.brief,
    prompt: `Write a two-line brief on ${input.domain}. Profile: ${profile.text} Market: ${market.text}`,
  });
  return { domain: input.domain, profile: profile.text, market: market.text, brief: brief.text };
}
