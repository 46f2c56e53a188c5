/**
 * What an LLM step makes of a provider's answers other than a clean stream: a refusal (401, 403,
 * 404, 400) fails the step at once, without retries that cannot help and without passing the
 * provider's own words (which may quote the host's key) to the tenant; a 429 is retried when the
 * provider says; a stream without usage still records what the call plausibly cost. Against
 * stand-in OpenAI-compatible servers: a real host worker for the run's failure, @temporalio/testing's
 * MockActivityEnvironment for one attempt.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { ApplicationFailure } from "@temporalio/activity";
import { Client, Connection, WorkflowFailedError } from "@temporalio/client";
import { MockActivityEnvironment } from "@temporalio/testing";
import { afterEach, describe, expect, inject, it } from "vitest";
import { askModel } from "../../host/activities/llm.ts";
import { type ActivityRuntime, installActivityRuntime } from "../../host/activities/runtime.ts";
import { loadConfig } from "../../host/config.ts";
import { EdgeClient } from "../../host/edge-client.ts";
import { createWorker } from "../../host/worker.ts";
import type { RunEvent } from "../../src/shared/host-api.ts";

// Test-only values.
const SECRET = "llm-provider-answers-test-secret";
const TASK_QUEUE = `host-llm-provider-answers-${process.pid}`;
/** What OpenAI answers a wrong key: it quotes part of the key. */
const PROVIDER_TEXT = "Incorrect API key provided: sk-pr****abcd. You can find your API key at https://example.invalid.";

let server: Server | undefined;
afterEach(async () => {
  server?.closeAllConnections();
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = undefined;
});

/** A stand-in provider answering every chat completion with `answer`; `requests` counts them. */
async function provider(answer: (req: IncomingMessage, res: ServerResponse) => void) {
  const state = { requests: 0 };
  server = createServer((req, res) => {
    state.requests++;
    req.resume();
    req.on("end", () => answer(req, res));
  });
  await new Promise<void>((r) => server!.listen(0, "127.0.0.1", r));
  return { baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`, state };
}

/** An OpenAI-style error answer. */
const refusing =
  (status: number, message: string, headers: Record<string, string> = {}) =>
  (_req: IncomingMessage, res: ServerResponse) => {
    res.writeHead(status, { "content-type": "application/json", ...headers });
    res.end(JSON.stringify({ error: { message, type: "invalid_request_error", code: null } }));
  };

/** One attempt of askModel against `baseUrl` (as `local/*`), its events collected. */
function mockAttempt(baseUrl: string) {
  const events: RunEvent[] = [];
  installActivityRuntime({
    edge: { pushRunEvents: async (_workflowId: string, pushed: RunEvent[]) => void events.push(...pushed) },
    prices: {},
    llm: { localBaseUrl: baseUrl },
    httpRequestCost: 0,
    deliveryWaitMs: 200,
  } as unknown as ActivityRuntime);
  return { events, env: new MockActivityEnvironment() };
}

async function failureOf(attempt: Promise<unknown>): Promise<ApplicationFailure> {
  const err = await attempt.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ApplicationFailure);
  return err as ApplicationFailure;
}

describe("a provider that refuses the host's credentials", () => {
  it("fails the run after one request, not retried, with a failure that does not carry the provider's words", async () => {
    const stub = await provider(refusing(401, PROVIDER_TEXT));
    const config = loadConfig({
      HOST_SHARED_SECRET: SECRET,
      TEMPORAL_ADDRESS: inject("temporalAddress"),
      TEMPORAL_TASK_QUEUE: TASK_QUEUE,
      HOST_LOG_LEVEL: "ERROR",
      OPENAI_COMPATIBLE_BASE_URL: stub.baseUrl,
      OPENAI_COMPATIBLE_API_KEY: "sk-pr-test-only-abcd",
    });
    const client = new Client({ connection: await Connection.connect({ address: config.temporalAddress }) });
    const worker = await createWorker(config, new EdgeClient("http://127.0.0.1:9", SECRET, () => undefined, 1));
    const running = worker.run();
    try {
      const handle = await client.workflow.start("run_prompt", {
        workflowId: `llm-refused-${crypto.randomUUID()}`,
        taskQueue: TASK_QUEUE,
        args: [{ template: "Say hi", variables: {}, model: "compatible/gpt-test", webSearch: false, maxOutputTokens: 50 }],
      });
      const err = await handle.result().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(WorkflowFailedError);
      const failure = (err as WorkflowFailedError).cause?.cause as ApplicationFailure;
      expect(failure).toBeInstanceOf(ApplicationFailure);
      expect(failure).toMatchObject({ type: "ProviderRejected", nonRetryable: true });
      expect(failure.message).toMatch(/refused the host's credentials/);
      // Nowhere in the failure the tenant reads: not the message, not a cause, not details.
      const chain: unknown[] = [];
      for (let link: unknown = err; link instanceof Error; link = link.cause)
        chain.push(link.message, (link as ApplicationFailure).details);
      expect(JSON.stringify(chain)).not.toMatch(/Incorrect API key|sk-pr/);
      expect(stub.state.requests).toBe(1);
    } finally {
      worker.shutdown();
      await running;
      await client.connection.close();
    }
  });
});

describe("other provider answers to one attempt", () => {
  it("a 404 (no such model) is not retryable and names the status, not the provider's text", async () => {
    const stub = await provider(refusing(404, "The model `gpt-nope` does not exist or you do not have access to it."));
    const { env } = mockAttempt(stub.baseUrl);
    const failure = await failureOf(env.run(() => askModel({ modelId: "local/gpt-nope", prompt: "hi" })));
    expect(failure).toMatchObject({ type: "ProviderRejected", nonRetryable: true });
    expect(failure.message).toContain("404");
    expect(failure.message).not.toContain("does not exist");
    expect(stub.state.requests).toBe(1);
  });

  it("a 429 with Retry-After is retryable after the delay the provider asked for", async () => {
    const stub = await provider(refusing(429, "Rate limit reached for requests", { "retry-after": "7" }));
    const { env } = mockAttempt(stub.baseUrl);
    const failure = await failureOf(env.run(() => askModel({ modelId: "local/writer", prompt: "hi" })));
    expect(failure.nonRetryable).toBe(false);
    expect(failure.nextRetryDelay).toBe(7_000);
    expect(failure.message).toContain("429");
    expect(failure.message).not.toContain("Rate limit reached");
  });

  it("a 429 without Retry-After is retryable on the workflow's own backoff", async () => {
    const stub = await provider(refusing(429, "Rate limit reached for requests"));
    const { env } = mockAttempt(stub.baseUrl);
    const failure = await failureOf(env.run(() => askModel({ modelId: "local/writer", prompt: "hi" })));
    expect(failure.nonRetryable).toBe(false);
    expect(failure.nextRetryDelay).toBeUndefined();
  });
});

describe("a provider stream that reports no usage", () => {
  it("records estimated token counts (about four characters a token), marked estimated, instead of 0", async () => {
    const answerText = "The answer is forty-two, as everyone knows.";
    const stub = await provider((_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      const chunk = (delta: object, finish: string | null) =>
        `data: ${JSON.stringify({ id: "c1", object: "chat.completion.chunk", created: 0, model: "writer", choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
      res.write(chunk({ role: "assistant", content: answerText }, null));
      res.write(chunk({}, "stop"));
      res.end("data: [DONE]\n\n");
    });
    const { env, events } = mockAttempt(stub.baseUrl);
    const prompt = "What is the answer to everything? Please be brief.";
    expect(await env.run(() => askModel({ modelId: "local/writer", prompt }))).toEqual({ text: answerText });
    const usage = events.find((e) => e.type === "attribute")?.data as { attribute: Record<string, unknown> } | undefined;
    const input = Math.ceil(prompt.length / 4);
    const output = Math.ceil(answerText.length / 4);
    expect(usage?.attribute).toMatchObject({
      type: "llm:usage",
      modelId: "local/writer",
      tokensUsed: input + output,
      usage: [
        { type: "input", amount: input },
        { type: "output", amount: output },
      ],
      estimated: true,
    });
  });
});

describe("a provider stream cut short", () => {
  const chunk = (delta: object) =>
    `data: ${JSON.stringify({ id: "c1", object: "chat.completion.chunk", created: 0, model: "writer", choices: [{ index: 0, delta, finish_reason: null }] })}\n\n`;
  const usageOf = (events: RunEvent[]) =>
    events.filter((e) => e.type === "attribute").map((e) => (e.data as { attribute: Record<string, unknown> }).attribute);

  it("after it began answering (the connection dropped mid-answer): the attempt fails, and what was generated is recorded as estimated usage, not lost (the provider bills it)", async () => {
    const partial = "The answer begins with a long preamble";
    const stub = await provider((_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write(chunk({ role: "assistant", content: partial }));
      setTimeout(() => res.destroy(), 100);
    });
    const { env, events } = mockAttempt(stub.baseUrl);
    const prompt = "Tell me everything.";
    await expect(env.run(() => askModel({ modelId: "local/writer", prompt }))).rejects.toThrow();
    expect(usageOf(events)).toEqual([
      expect.objectContaining({
        type: "llm:usage",
        modelId: "local/writer",
        usage: [
          { type: "input", ppm: 0, amount: Math.ceil(prompt.length / 4), total: 0 },
          { type: "output", ppm: 0, amount: Math.ceil(partial.length / 4), total: 0 },
        ],
        estimated: true,
      }),
    ]);
  });

  it("before it began answering (refused): no usage is recorded", async () => {
    const stub = await provider(refusing(500, "the provider is down"));
    const { env, events } = mockAttempt(stub.baseUrl);
    await expect(env.run(() => askModel({ modelId: "local/writer", prompt: "hi" }))).rejects.toThrow();
    expect(usageOf(events)).toEqual([]);
  });
});

describe("a provider stream that reports usage no call can have", () => {
  it("a negative, fractional or absurd token count is recorded as an estimate, marked estimated, instead of failing the paid call (and its retries) with an attribute the edge refuses", async () => {
    const answerText = "Forty-two.";
    const prompt = "What is the answer?";
    const reported = [
      { prompt_tokens: -400, completion_tokens: 3 },
      { prompt_tokens: 5, completion_tokens: 2.5 },
      { prompt_tokens: 1e15, completion_tokens: 3 },
    ];
    let answered = 0;
    const stub = await provider((_req, res) => {
      const usage = reported[answered++]!;
      res.writeHead(200, { "content-type": "text/event-stream" });
      const chunk = (body: object) =>
        `data: ${JSON.stringify({ id: "c1", object: "chat.completion.chunk", created: 0, model: "writer", ...body })}\n\n`;
      res.write(chunk({ choices: [{ index: 0, delta: { role: "assistant", content: answerText }, finish_reason: null }] }));
      res.write(chunk({ choices: [{ index: 0, delta: {}, finish_reason: "stop" }] }));
      res.write(chunk({ choices: [], usage: { ...usage, total_tokens: usage.prompt_tokens + usage.completion_tokens } }));
      res.end("data: [DONE]\n\n");
    });
    for (const usage of reported) {
      const { env, events } = mockAttempt(stub.baseUrl);
      expect(await env.run(() => askModel({ modelId: "local/writer", prompt })), JSON.stringify(usage)).toEqual({ text: answerText });
      const attribute = (events.find((e) => e.type === "attribute")?.data as { attribute: Record<string, unknown> } | undefined)?.attribute;
      // The count the provider gave where it is one a call can have; an estimate where it is not.
      const input = usage.prompt_tokens === 5 ? 5 : Math.ceil(prompt.length / 4);
      const output = usage.completion_tokens === 3 ? 3 : Math.ceil(answerText.length / 4);
      expect(attribute, JSON.stringify(usage)).toMatchObject({
        type: "llm:usage",
        tokensUsed: input + output,
        usage: [
          { type: "input", amount: input },
          { type: "output", amount: output },
        ],
        estimated: true,
      });
    }
    expect(answered).toBe(3);
  });
});
