/**
 * The local OpenAI-compatible stand-in (host/local-llm/server.ts): a request it cannot answer is a
 * 4xx for that request, in OpenAI's error shape, and the server goes on serving (before, `null` or
 * `messages: [null]` threw in its handler: an unhandled rejection that ended `npm run dev`'s LLM
 * server); a streamed answer adds up to the plain one.
 */
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLocalLlmServer, MAX_REQUEST_BYTES } from "../../host/local-llm/server.ts";

let base: string;
const local = createLocalLlmServer();

beforeAll(async () => {
  await new Promise<void>((listening) => local.server.listen(0, "127.0.0.1", listening));
  base = `http://127.0.0.1:${(local.server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((closed) => local.server.close(() => closed())));

const complete = (body: string) =>
  fetch(`${base}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body });

describe("local LLM server: requests it cannot answer", () => {
  it("answers 400 to bodies that are JSON but not a chat completion request, and keeps serving", async () => {
    for (const body of [
      "null",
      "[]",
      '"text"',
      '{"model":"m","messages":[null]}',
      '{"model":"m","messages":[{"content":"no role"}]}',
      '{"model":"m","messages":[{"role":"user","content":5}]}',
      '{"model":"m","messages":[{"role":"user","content":[null]}]}',
      '{"model":"","messages":[]}',
      '{"model":"m","messages":[],"max_tokens":-1}',
      '{"model":"m","messages":[]}',
      "{oops",
    ]) {
      const res = await complete(body);
      expect(res.status, body).toBe(400);
      expect(((await res.json()) as { error: { message: string } }).error.message, body).toBeTypeOf("string");
    }
    const ok = await complete('{"model":"local/writer","messages":[{"role":"user","content":"still here"}],"temperature":0.2}');
    expect(ok.status).toBe(200);
    expect(((await ok.json()) as { choices: Array<{ message: { content: string } }> }).choices[0]!.message.content).toContain("still here");
    expect((await fetch(`${base}/health`)).status).toBe(200);
  });
});

/** An error answer's body: OpenAI's shape, every field present. */
async function openAiError(res: Response): Promise<{ message: string; type: string; param: string | null; code: string }> {
  const body = (await res.json()) as { error: { message: string; type: string; param: string | null; code: string } };
  expect(Object.keys(body)).toEqual(["error"]);
  expect(Object.keys(body.error).sort()).toEqual(["code", "message", "param", "type"]);
  expect(body.error.message).toBeTypeOf("string");
  expect(body.error.type).toBe("invalid_request_error");
  return body.error;
}

describe("local LLM server: error answers", () => {
  it("are OpenAI's shape {error: {message, type, param, code}}, with a code naming the problem and the field at fault", async () => {
    expect(await openAiError(await complete("{oops"))).toMatchObject({ code: "invalid_json", param: null });
    expect(await openAiError(await complete('{"model":"m","messages":[{"role":"user","content":5}]}'))).toMatchObject({
      code: "invalid_request",
      param: "messages.0.content",
    });
    expect(await openAiError(await complete('{"model":"m","messages":[]}'))).toMatchObject({ code: "invalid_request", param: "messages" });
    const unknownPath = await fetch(`${base}/v1/embeddings`, { method: "POST", body: "{}" });
    expect(unknownPath.status).toBe(404);
    expect(await openAiError(unknownPath)).toMatchObject({ code: "not_found", param: null });
    const noPage = await fetch(`${base}/pages/no-such-page`);
    expect(noPage.status).toBe(404);
    expect(await openAiError(noPage)).toMatchObject({ code: "not_found" });
  });

  it("a page named after an Object.prototype property (constructor, __proto__, toString) is 404, not an empty page or a dropped connection", async () => {
    for (const name of ["constructor", "__proto__", "toString", "hasOwnProperty"]) {
      const res = await fetch(`${base}/pages/${name}`);
      expect(res.status, name).toBe(404);
      expect(await openAiError(res)).toMatchObject({ code: "not_found" });
    }
    expect((await fetch(`${base}/pages/durable-execution`)).status).toBe(200);
  });

  it("a body past MAX_REQUEST_BYTES is 413 (not kept in memory), and the server goes on serving", async () => {
    const big = `{"model":"m","messages":[{"role":"user","content":"${"a ".repeat(MAX_REQUEST_BYTES / 2)}"}]}`;
    const res = await complete(big);
    expect(res.status).toBe(413);
    expect(await openAiError(res)).toMatchObject({ code: "request_too_large" });
    expect((await complete('{"model":"m","messages":[{"role":"user","content":"small"}]}')).status).toBe(200);
  });
});

/** The deltas of a streamed completion, added up, and its last frames. */
async function streamed(body: Record<string, unknown>) {
  const res = await complete(JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }));
  expect(res.headers.get("content-type")).toBe("text/event-stream");
  const frames = (await res.text()).split("\n\n").filter(Boolean);
  expect(frames.at(-1)).toBe("data: [DONE]");
  const chunks = frames.slice(0, -1).map((f) => JSON.parse(f.replace(/^data: /, "")));
  let reasoning = "";
  let content = "";
  let reasoningDeltas = 0;
  for (const chunk of chunks) {
    const delta = chunk.choices[0]?.delta ?? {};
    if (delta.reasoning_content !== undefined) reasoningDeltas++;
    reasoning += delta.reasoning_content ?? "";
    content += delta.content ?? "";
  }
  const finish = chunks.map((c) => c.choices[0]?.finish_reason).filter(Boolean);
  return { reasoning, content, reasoningDeltas, finish, usage: chunks.at(-1).usage };
}

describe("local LLM server: streaming", () => {
  it("the streamed deltas add up to the plain answer, reasoning included, with the same finish reason and usage", async () => {
    for (const extra of [{}, { max_tokens: 5 }, { max_tokens: 1 }]) {
      const request = { model: "local/writer", messages: [{ role: "user", content: "explain durable execution briefly" }], ...extra };
      const plain = (await (await complete(JSON.stringify(request))).json()) as {
        choices: Array<{ finish_reason: string; message: { content: string; reasoning_content: string } }>;
        usage: unknown;
      };
      const stream = await streamed(request);
      const label = JSON.stringify(extra);
      expect(stream.reasoning, label).toBe(plain.choices[0]!.message.reasoning_content);
      expect(stream.content, label).toBe(plain.choices[0]!.message.content);
      expect(stream.finish, label).toEqual([plain.choices[0]!.finish_reason]);
      expect(stream.usage, label).toEqual(plain.usage);
      // No reasoning (a cut to one token leaves none): no reasoning delta at all, not one of " ".
      if (plain.choices[0]!.message.reasoning_content === "") expect(stream.reasoningDeltas, label).toBe(0);
    }
  });
});
