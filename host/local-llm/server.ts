/**
 * A small OpenAI-compatible server for tests and offline development: the only stand-in in this
 * project, for paid LLM providers and web search. Everything it says is deterministic:
 *
 * - `POST /v1/chat/completions` (plain and streaming): the answer and the reasoning text derive
 *   from the prompt; `usage` counts are exact under its one rule, one token per whitespace-
 *   separated word (prompt: all message texts; completion: answer plus reasoning).
 * - With `web_search_options` in the request, the answer cites sources (`annotations`).
 * - `max_tokens` / `max_completion_tokens` cut the completion short (finish reason `length`).
 * - Models whose name contains `slow` stream half a second a word (for time-limit tests).
 * - `GET /pages/:slug`: fixed HTML pages for workflows that fetch the web; `GET /pages/redirect?to=`
 *   answers 302 to `to` (the SSRF guard tests check that the redirect is checked).
 * - `GET /_calls`: every completion it served, with its usage, so tests can redo the arithmetic.
 * - A request it cannot answer gets a 4xx in OpenAI's error shape (`{error: {message, type, param,
 *   code}}`): `invalid_json`, `invalid_request` (with the field at fault in `param`), `not_found`,
 *   `request_too_large` (a body past MAX_REQUEST_BYTES, 413).
 *
 *   npm run local-llm            (port LOCAL_LLM_PORT, default 8790; `npm run dev` starts it)
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { z } from "zod";

export const countTokens = (text: string) => text.split(/\s+/).filter(Boolean).length;

/** What a chat completion request must carry for this server to answer it; other fields pass. */
const chatRequest = z.looseObject({
  model: z.string().min(1),
  // OpenAI refuses an empty list too.
  messages: z
    .array(
      z.looseObject({
        role: z.string(),
        content: z.union([z.string(), z.array(z.looseObject({ type: z.string(), text: z.string().optional() })), z.null()]).optional(),
      }),
    )
    .min(1),
  stream: z.boolean().optional(),
  stream_options: z.looseObject({ include_usage: z.boolean().optional() }).optional(),
  web_search_options: z.unknown().optional(),
  max_tokens: z.number().int().positive().optional(),
  max_completion_tokens: z.number().int().positive().optional(),
});

type ChatMessage = z.infer<typeof chatRequest>["messages"][number];

/** `GET /_calls` keeps the most recent completions only: a long `npm run dev` session must not grow without end. */
export const MAX_CALLS_KEPT = 10_000;

export interface ServedCall {
  model: string;
  promptTokens: number;
  completionTokens: number;
  reasoningTokens: number;
  webSearch: boolean;
}

const PAGES: Record<string, string> = {
  "durable-execution": `<html><head><title>Durable execution</title></head><body><h1>Durable execution</h1>
<p>Durable execution lets a program survive crashes: every step is recorded, and after a failure the
program resumes from the last recorded step instead of starting over.</p>
<p>Workflow engines such as Temporal keep an event history per run and replay it to rebuild state.</p></body></html>`,
};

export const SEARCH_SOURCES = [
  { url: "https://example.com/research/overview", title: "Overview" },
  { url: "https://example.org/research/market", title: "Market notes" },
];

function text(content: ChatMessage["content"]): string {
  if (typeof content === "string") return content;
  return (content ?? []).map((p) => p.text ?? "").join(" ");
}

/** `max_tokens` bounds the completion (reasoning and answer), as real providers do. */
export function answerFor(messages: ChatMessage[], model: string, maxTokens?: number) {
  const lastUser = [...messages].reverse().find((m) => m.role === "user");
  const words = text(lastUser?.content ?? "")
    .split(/\s+/)
    .filter(Boolean);
  let reasoning = `Reading the request: ${words.slice(0, 8).join(" ")}. Deciding what matters most.`;
  let answer = `(${model}) In short: ${words.slice(0, 24).join(" ")}${words.length > 24 ? " …" : ""}`;
  let truncated = false;
  if (maxTokens !== undefined && countTokens(reasoning) + countTokens(answer) > maxTokens) {
    truncated = true;
    const reasoningWords = Math.min(countTokens(reasoning), Math.floor(maxTokens / 2));
    reasoning = reasoning.split(" ").slice(0, reasoningWords).join(" ");
    answer = answer
      .split(" ")
      .slice(0, Math.max(1, maxTokens - reasoningWords))
      .join(" ");
  }
  const promptTokens = messages.reduce((n, m) => n + countTokens(text(m.content)), 0);
  return {
    reasoning,
    answer,
    truncated,
    promptTokens,
    completionTokens: countTokens(answer) + countTokens(reasoning),
    reasoningTokens: countTokens(reasoning),
  };
}

/** The largest request body kept, in bytes: one request must not run the server out of memory. */
export const MAX_REQUEST_BYTES = 32 * 1024 * 1024;

/**
 * The request's body, or undefined past MAX_REQUEST_BYTES. A body too large is still read to its
 * end (and dropped), so the client gets the 413 instead of a connection cut while it sends.
 */
async function readBody(req: IncomingMessage): Promise<string | undefined> {
  let chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size <= MAX_REQUEST_BYTES) chunks.push(chunk);
    else chunks = [];
  }
  return size > MAX_REQUEST_BYTES ? undefined : Buffer.concat(chunks).toString("utf8");
}

/** An error answer in OpenAI's shape: `code` names the problem, `param` the request field at fault (null when none). */
function openAiError(message: string, code: string, param: string | null = null, type = "invalid_request_error") {
  return { error: { message, type, param, code } };
}

/** A text's words as stream deltas: each after the first with its space, so they add up to the text (none for "", as nothing was said). */
const deltas = (text: string) => (text === "" ? [] : text.split(" ").map((word, i) => (i === 0 ? word : ` ${word}`)));

export function createLocalLlmServer() {
  const calls: ServedCall[] = [];
  let served = 0;
  const server = createServer((req, res) => {
    // A request it cannot answer is that request's error, never the server's end.
    handle(req, res).catch((err: unknown) => {
      console.error("local LLM server:", err);
      if (!res.headersSent) {
        res.writeHead(500, { "content-type": "application/json" });
        res.end(JSON.stringify(openAiError("the local LLM server failed on this request", "internal_error", null, "server_error")));
      } else res.destroy();
    });
  });
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? "/", "http://local");
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    if (req.method === "GET" && url.pathname === "/health") return json(200, { ok: true });
    if (req.method === "GET" && url.pathname === "/_calls") return json(200, { calls });
    // A redirect anywhere (test fixture only: the SSRF guard must check where it points).
    if (req.method === "GET" && url.pathname === "/pages/redirect" && url.searchParams.get("to")) {
      res.writeHead(302, { location: url.searchParams.get("to")! });
      return res.end();
    }
    if (req.method === "GET" && url.pathname.startsWith("/pages/")) {
      const slug = url.pathname.slice("/pages/".length);
      // Own names only: `constructor` or `__proto__` are not pages (they answered an empty 200, or a dropped connection).
      if (!Object.hasOwn(PAGES, slug)) return json(404, openAiError(`no page named "${slug}"`, "not_found"));
      res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
      return res.end(PAGES[slug]);
    }
    if (req.method !== "POST" || url.pathname !== "/v1/chat/completions")
      return json(404, openAiError(`Invalid URL (${req.method} ${url.pathname})`, "not_found"));

    const bodyText = await readBody(req);
    if (bodyText === undefined)
      return json(413, openAiError(`the request body is larger than ${MAX_REQUEST_BYTES} bytes`, "request_too_large"));
    let raw: unknown;
    try {
      raw = JSON.parse(bodyText);
    } catch {
      return json(400, openAiError("the request body is not valid JSON", "invalid_json"));
    }
    const parsed = chatRequest.safeParse(raw);
    if (!parsed.success) {
      const path = parsed.error.issues[0]?.path ?? [];
      const message = `not a chat completion request: ${z.prettifyError(parsed.error)}`;
      return json(400, openAiError(message, "invalid_request", path.length > 0 ? path.join(".") : null));
    }
    const body = parsed.data;
    const model = body.model;
    const webSearch = body.web_search_options !== undefined;
    const a = answerFor(body.messages, model, body.max_completion_tokens ?? body.max_tokens);
    const finishReason = a.truncated ? "length" : "stop";
    calls.push({
      model,
      promptTokens: a.promptTokens,
      completionTokens: a.completionTokens,
      reasoningTokens: a.reasoningTokens,
      webSearch,
    });
    if (calls.length > MAX_CALLS_KEPT) calls.splice(0, calls.length - MAX_CALLS_KEPT);
    served++;
    const usage = {
      prompt_tokens: a.promptTokens,
      completion_tokens: a.completionTokens,
      total_tokens: a.promptTokens + a.completionTokens,
      completion_tokens_details: { reasoning_tokens: a.reasoningTokens },
    };
    const annotations = webSearch
      ? SEARCH_SOURCES.map((s) => ({ type: "url_citation", url_citation: { url: s.url, title: s.title, start_index: 0, end_index: 0 } }))
      : undefined;
    const id = `chatcmpl-local-${served}`;
    const created = Math.floor(Date.now() / 1000);

    if (!body.stream) {
      return json(200, {
        id,
        object: "chat.completion",
        created,
        model,
        choices: [
          {
            index: 0,
            finish_reason: finishReason,
            message: { role: "assistant", content: a.answer, reasoning_content: a.reasoning, annotations },
          },
        ],
        usage,
      });
    }
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    const send = (delta: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
      res.write(
        `data: ${JSON.stringify({ id, object: "chat.completion.chunk", created, model, choices: [{ index: 0, delta, finish_reason: null }], ...extra })}\n\n`,
      );
    // Models named `*slow*` take half a second a word, for tests of time limits.
    const pause = () => new Promise((r) => setTimeout(r, model.includes("slow") ? 500 : 5));
    send({ role: "assistant", content: "" });
    // The deltas add up to the plain answer's texts exactly (no reasoning delta when there is no reasoning).
    for (const delta of deltas(a.reasoning)) {
      send({ reasoning_content: delta });
      await pause();
    }
    for (const delta of deltas(a.answer)) {
      send({ content: delta });
      await pause();
    }
    if (annotations) send({ annotations });
    res.write(
      `data: ${JSON.stringify({ id, object: "chat.completion.chunk", created, model, choices: [{ index: 0, delta: {}, finish_reason: finishReason }] })}\n\n`,
    );
    if (body.stream_options?.include_usage)
      res.write(`data: ${JSON.stringify({ id, object: "chat.completion.chunk", created, model, choices: [], usage })}\n\n`);
    res.end("data: [DONE]\n\n");
  };
  return { server, calls };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const port = Number(process.env.LOCAL_LLM_PORT ?? 8790);
  createLocalLlmServer().server.listen(port, "127.0.0.1", () =>
    console.log(`local LLM server (OpenAI-compatible) on http://127.0.0.1:${port}/v1`),
  );
}
