/**
 * LLM steps on the AI SDK. Each call streams: reasoning text is published as `thinking` events as
 * it arrives (it is not in Temporal history), and the call's token usage becomes an `llm:usage`
 * attribute priced from the price table.
 */
import { ApplicationFailure } from "@temporalio/activity";
import { streamText } from "ai";
import { UnknownModelError, resolveModel } from "../llm/models.ts";
import { usageAttribute } from "../llm/pricing.ts";
import { StepPublisher, activityRuntime } from "./runtime.ts";

/** Reasoning deltas are gathered for this long before they are published together. */
const THINKING_FLUSH_MS = 150;

export interface AskModelInput {
  modelId: string;
  prompt: string;
  system?: string;
}

export interface AskModelOutput {
  text: string;
}

export async function askModel(input: AskModelInput): Promise<AskModelOutput> {
  const runtime = activityRuntime();
  const publisher = new StepPublisher();
  let model;
  try {
    ({ model } = resolveModel(input.modelId, runtime.llm));
  } catch (err) {
    if (err instanceof UnknownModelError) throw ApplicationFailure.nonRetryable(err.message, "UnknownModel");
    throw err;
  }
  const result = streamText({
    model,
    prompt: input.prompt,
    system: input.system,
    maxRetries: 0, // Temporal retries the activity
  });

  let pending = "";
  let lastFlush = Date.now();
  const flushThinking = () => {
    if (!pending) return;
    void publisher.thinking(pending);
    pending = "";
    lastFlush = Date.now();
  };
  let text = "";
  for await (const part of result.fullStream) {
    if (part.type === "reasoning-delta") {
      pending += part.text;
      if (Date.now() - lastFlush >= THINKING_FLUSH_MS) flushThinking();
    } else if (part.type === "text-delta") {
      flushThinking();
      text += part.text;
    } else if (part.type === "error") {
      throw part.error;
    }
  }
  flushThinking();
  const usage = await result.totalUsage;
  await publisher.attribute(usageAttribute(input.modelId, usage.inputTokens ?? 0, usage.outputTokens ?? 0, runtime.prices));
  await publisher.flush();
  return { text };
}
