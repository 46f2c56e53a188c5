/**
 * LLM steps on the AI SDK. Each call streams: reasoning text is published as `thinking` events as
 * it arrives (it is not in Temporal history), answer text as `text` events for the steps whose
 * callers stream it, and the call's token usage becomes an `llm:usage` attribute priced from the
 * price table.
 */

import { ApplicationFailure, Context } from "@temporalio/activity";
import { streamText, type ToolSet } from "ai";
import { renderTemplate } from "../../src/shared/prompt-template.ts";
import { resolveModel, UnknownModelError } from "../llm/models.ts";
import { usageAttribute } from "../llm/pricing.ts";
import { activityRuntime, heartbeating, StepPublisher } from "./runtime.ts";

/** Reasoning and answer deltas are gathered for this long before they are published together. */
const STREAM_FLUSH_MS = 150;
export interface AskModelInput {
  modelId: string;
  prompt: string;
  system?: string;
}

export interface AskModelOutput {
  text: string;
}

/**
 * The prompt comes as its template and the caller's values, rendered here: rendered, it may be
 * 4 MiB (MAX_RENDERED_PROMPT_BYTES), twice Temporal's 2 MiB limit on one payload, and as the
 * activity's input it would fail every workflow task of the run (which would hang, not fail). The
 * template and values are the run's own input, which Temporal already took. `prompt`: runs
 * scheduled before this was so.
 */
export type AnswerPromptInput = {
  modelId: string;
  webSearch: boolean;
  maxOutputTokens: number;
} & ({ template: string; variables: Record<string, string> } | { prompt: string });

export interface AnswerPromptOutput {
  text: string;
  /** URLs of the web sources the model cited (web search only), in order, without repeats. */
  citations: string[];
}

interface ModelCall {
  modelId: string;
  prompt: string;
  system?: string;
  maxOutputTokens?: number;
  webSearch?: boolean;
  /** Publish answer text as it is generated. */
  streamAnswer?: boolean;
}

/** A buffer that publishes what it gathered at most every STREAM_FLUSH_MS. */
function throttled(publish: (text: string) => Promise<void>) {
  let pending = "";
  let lastFlush = Date.now();
  const flush = () => {
    if (!pending) return;
    void publish(pending);
    pending = "";
    lastFlush = Date.now();
  };
  return {
    add(text: string) {
      pending += text;
      if (Date.now() - lastFlush >= STREAM_FLUSH_MS) flush();
    },
    flush,
  };
}

async function callModel(call: ModelCall): Promise<{ text: string; citations: string[] }> {
  const runtime = activityRuntime();
  const publisher = new StepPublisher();
  let resolved;
  try {
    resolved = resolveModel(call.modelId, runtime.llm, { webSearch: call.webSearch ?? false });
  } catch (err) {
    if (err instanceof UnknownModelError) throw ApplicationFailure.nonRetryable(err.message, "UnknownModel");
    throw err;
  }
  // A cancelled attempt (its run cancelled or terminated, the worker shutting down) stops the
  // provider's generation at once: it is paid for by the token, and nobody will read the rest.
  const activity = Context.current();
  const result = streamText({
    model: resolved.model,
    prompt: call.prompt,
    system: call.system,
    maxOutputTokens: call.maxOutputTokens,
    tools: resolved.tools as ToolSet | undefined,
    maxRetries: 0, // Temporal retries the activity
    abortSignal: activity.cancellationSignal,
  });

  const thinking = throttled((text) => publisher.thinking(text));
  const answer = throttled((text) => publisher.text(text));
  let text = "";
  const citations: string[] = [];
  // Heartbeats while it streams: how the attempt hears that it was cancelled.
  await heartbeating(async () => {
    for await (const part of result.fullStream) {
      if (part.type === "reasoning-delta") {
        thinking.add(part.text);
      } else if (part.type === "text-delta") {
        thinking.flush();
        text += part.text;
        if (call.streamAnswer) answer.add(part.text);
      } else if (part.type === "source" && part.sourceType === "url") {
        if (!citations.includes(part.url)) citations.push(part.url);
      } else if (part.type === "error") {
        throw part.error;
      }
    }
  });
  // An aborted stream ends quietly: the attempt is cancelled, not an answer cut short.
  activity.cancellationSignal.throwIfAborted();
  thinking.flush();
  answer.flush();
  const usage = await result.totalUsage;
  void publisher.attribute(usageAttribute(call.modelId, usage.inputTokens ?? 0, usage.outputTokens ?? 0, runtime.prices));
  await publisher.settled();
  return { text, citations };
}

export async function askModel(input: AskModelInput): Promise<AskModelOutput> {
  const { text } = await callModel(input);
  return { text };
}

/** The step of `run_prompt`: streams its answer, cites sources when web search is on. */
export async function answerPrompt(input: AnswerPromptInput): Promise<AnswerPromptOutput> {
  const prompt = "prompt" in input ? input.prompt : renderTemplate(input.template, input.variables);
  const { modelId, webSearch, maxOutputTokens } = input;
  return callModel({ modelId, prompt, webSearch, maxOutputTokens, streamAnswer: true });
}
