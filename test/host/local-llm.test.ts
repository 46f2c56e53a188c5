/**
 * The local OpenAI-compatible stand-in (host/local-llm/server.ts): a request it cannot answer is a
 * 400 for that request, and the server goes on serving (before, `null` or `messages: [null]` threw
 * in its handler: an unhandled rejection that ended `npm run dev`'s LLM server).
 */
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLocalLlmServer } from "../../host/local-llm/server.ts";

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
