/**
 * LLM steps on the AI SDK. Each call streams: reasoning text is published as `thinking` events as
 * it arrives (it is not in Temporal history), answer text as `text` events for the steps whose
 * callers stream it, and the call's token usage becomes an `llm:usage` attribute priced from the
 * price table.
 */

import { ApplicationFailure, Context } from "@temporalio/activity";
import { APICallError, streamText, type ToolSet } from "ai";
import { renderTemplate } from "../../src/shared/prompt-template.ts";
import { resolveModel, UnknownModelError } from "../llm/models.ts";
import { usageAttribute } from "../llm/pricing.ts";
import { MAX_ATTRIBUTE_NUMBER } from "../../src/shared/run-event-schema.ts";
import { retryAfterMs } from "./retry-after.ts";
import { activityRuntime, heartbeating, StepPublisher } from "./runtime.ts";

/** Reasoning and answer deltas are gathered for this long before they are published together. */
const STREAM_FLUSH_MS = 150;
/**
 * Characters per token when a provider reports no usage: the usual rule of thumb for English text
 * (OpenAI's), so the call is charged about what it cost instead of nothing.
 */
const CHARS_PER_TOKEN_ESTIMATE = 4;
const estimateTokens = (chars: number) => Math.ceil(chars / CHARS_PER_TOKEN_ESTIMATE);
/** How much of a provider's error text the host's log keeps. */
const MAX_LOGGED_PROVIDER_TEXT = 1_000;
/**
 * The most tokens a provider may report for one side of one call and be believed: far past any
 * model's context, and half of what an attribute may carry, so the two sides' sum stays within it.
 */
const MAX_REPORTED_TOKENS = MAX_ATTRIBUTE_NUMBER / 2;

/**
 * A token count as the provider reported it, when a call can have it: a whole number from 0 to
 * MAX_REPORTED_TOKENS. Anything else (negative, fractional, absurd: a buggy or hostile
 * OpenAI-compatible server) is undefined and estimated like a missing one; recorded, it would make
 * an attribute the edge refuses, failing a call already paid for, and each of its retries.
 */
const reportedTokens = (n: number | undefined) =>
  n !== undefined && Number.isSafeInteger(n) && n >= 0 && n <= MAX_REPORTED_TOKENS ? n : undefined;
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

/**
 * A call the provider did not answer with a stream (an HTTP error, or no answer), as the step's
 * failure. The provider's own text
 * stays in the host's log: it goes to the tenant in the run's failure otherwise, and it may quote
 * the host's key ("Incorrect API key provided: sk-pr****abcd"). A refusal (400, 401, 403, 404...;
 * the AI SDK's `isRetryable` false) fails the step at once: the same request would be refused
 * again, on every attempt. A 429 or 5xx is retried, after the delay the provider asked for if it
 * said one.
 */
function providerFailure(err: APICallError, modelId: string): ApplicationFailure {
  const status = err.statusCode;
  const { workflowExecution, activityId, attempt } = Context.current().info;
  let where = "";
  try {
    const url = new URL(err.url);
    where = `${url.origin}${url.pathname}`; // no query: some providers take the key there
  } catch {
    /* not a URL: leave it out */
  }
  // Never `requestBodyValues`: it holds the prompt.
  console.warn(
    JSON.stringify({
      level: "warn",
      message: "model provider call failed",
      modelId,
      status: status ?? null,
      url: where,
      providerMessage: err.message.slice(0, MAX_LOGGED_PROVIDER_TEXT),
      retryable: err.isRetryable,
      workflowId: workflowExecution?.workflowId,
      runId: workflowExecution?.runId,
      activityId,
      attempt,
    }),
  );
  const http = status === undefined ? "no HTTP answer" : `HTTP ${status}`;
  if (!err.isRetryable) {
    const message =
      status === 401 || status === 403
        ? `the model provider refused the host's credentials for ${modelId} (${http}); the host's operator must fix its API key`
        : `the model provider refused the request for ${modelId} (${http})`;
    return ApplicationFailure.nonRetryable(message, "ProviderRejected");
  }
  const message =
    status === 429
      ? `the model provider is limiting the host's requests for ${modelId} (${http})`
      : `the model provider could not answer for ${modelId} (${http})`;
  return ApplicationFailure.create({
    message,
    type: "ProviderUnavailable",
    nonRetryable: false,
    nextRetryDelay: retryAfterMs((name) => err.responseHeaders?.[name]),
  });
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
    // The stream's `error` part below handles it. The SDK's default prints the whole error, whose
    // request body is the prompt, to the host's log.
    onError: () => undefined,
  });

  const thinking = throttled((text) => publisher.thinking(text));
  const answer = throttled((text) => publisher.text(text));
  let text = "";
  let reasoningChars = 0;
  const citations: string[] = [];
  /** Characters of prompt, and of reasoning and answer so far: what an estimate of the call's tokens reads. */
  const chars = () => ({ input: (call.system?.length ?? 0) + call.prompt.length, output: text.length + reasoningChars });
  try {
    // Heartbeats while it streams: how the attempt hears that it was cancelled.
    await heartbeating(async () => {
      for await (const part of result.fullStream) {
        if (part.type === "reasoning-delta") {
          thinking.add(part.text);
          reasoningChars += part.text.length;
        } else if (part.type === "text-delta") {
          thinking.flush();
          text += part.text;
          if (call.streamAnswer) answer.add(part.text);
        } else if (part.type === "source" && part.sourceType === "url") {
          if (!citations.includes(part.url)) citations.push(part.url);
        } else if (part.type === "error") {
          if (APICallError.isInstance(part.error)) throw providerFailure(part.error, call.modelId);
          throw part.error;
        }
      }
    });
    // An aborted stream ends quietly: the attempt is cancelled, not an answer cut short.
    activity.cancellationSignal.throwIfAborted();
  } catch (err) {
    // Cut short (cancelled, the provider's stream broken) once the provider had begun answering:
    // it bills the prompt and what it generated, though its usage report (sent at a stream's end)
    // never came. Recorded as an estimate, not lost; a call refused before any text costs nothing.
    const sofar = chars();
    if (sofar.output > 0) {
      void publisher.attribute(
        usageAttribute(call.modelId, estimateTokens(sofar.input), estimateTokens(sofar.output), runtime.prices, { estimated: true }),
      );
      await publisher.settled();
    }
    throw err;
  }
  thinking.flush();
  answer.flush();
  const usage = await result.totalUsage;
  // Some OpenAI-compatible servers send no usage (or not for streams), or counts no call can have.
  // Recording 0 would make the call free; an estimate from the text (about CHARS_PER_TOKEN_ESTIMATE
  // characters a token, of the prompt and of the reasoning and answer text) is marked `estimated` instead.
  const reportedInput = reportedTokens(usage.inputTokens);
  const reportedOutput = reportedTokens(usage.outputTokens);
  const inputTokens = reportedInput ?? estimateTokens(chars().input);
  const outputTokens = reportedOutput ?? estimateTokens(chars().output);
  const estimated = reportedInput === undefined || reportedOutput === undefined;
  if (estimated) {
    console.warn(
      JSON.stringify({
        level: "warn",
        message: "model provider reported no usable token usage; recording an estimate",
        modelId: call.modelId,
        reported: { inputTokens: usage.inputTokens ?? null, outputTokens: usage.outputTokens ?? null },
      }),
    );
  }
  void publisher.attribute(usageAttribute(call.modelId, inputTokens, outputTokens, runtime.prices, { estimated }));
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
