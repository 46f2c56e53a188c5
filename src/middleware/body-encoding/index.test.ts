/** refuseEncodedBody() on its own, in a minimal app with the edge's error handler. */
import { Hono } from "hono";
import { describe, expect, it } from "vitest";
import type { AppEnv } from "../../app-env.ts";
import { handleError } from "../../errors.ts";
import { refuseEncodedBody } from "./index.ts";

const app = new Hono<AppEnv>();
app.use("*", refuseEncodedBody());
app.all("/echo", async (c) => c.text(await c.req.text()));
app.onError(handleError);

const send = (headers: Record<string, string>, body?: BodyInit, method = "POST") =>
  app.request("/echo", { method, headers, ...(body === undefined ? {} : { body }) });

const gzip = async (text: string) =>
  new Uint8Array(await new Response(new Blob([text]).stream().pipeThrough(new CompressionStream("gzip"))).arrayBuffer());

describe("refuseEncodedBody (happy)", () => {
  it("a body without Content-Encoding, or with identity, is read as sent", async () => {
    for (const headers of [{}, { "content-encoding": "identity" }, { "content-encoding": " Identity " }] as Record<string, string>[]) {
      const res = await send(headers, '{"a":1}');
      expect([res.status, await res.text()]).toEqual([200, '{"a":1}']);
    }
  });

  it("a Content-Encoding on a request without a body changes nothing", async () => {
    const res = await send({ "content-encoding": "gzip" }, undefined, "GET");
    expect(res.status).toBe(200);
  });
});

describe("refuseEncodedBody (errors)", () => {
  it("a gzip body, or a plain body labelled br, deflate or a list, is 415 unsupported_media_type naming the coding", async () => {
    const cases: Array<[string, BodyInit]> = [
      ["gzip", await gzip('{"a":1}')],
      ["br", '{"a":1}'],
      ["deflate", '{"a":1}'],
      ["identity, gzip", '{"a":1}'],
    ];
    for (const [encoding, body] of cases) {
      const res = await send({ "content-encoding": encoding, "content-type": "application/json" }, body);
      const answer = (await res.json()) as { error: { code: string; message: string } };
      expect([encoding, res.status, answer.error.code]).toEqual([encoding, 415, "unsupported_media_type"]);
      expect(answer.error.message).toContain(`Content-Encoding "${encoding}"`);
    }
  });

  it("security: a very long Content-Encoding is quoted cut short", async () => {
    const res = await send({ "content-encoding": "x".repeat(5000) }, "{}");
    const answer = (await res.json()) as { error: { code: string; message: string } };
    expect([res.status, answer.error.code]).toEqual([415, "unsupported_media_type"]);
    expect(answer.error.message.length).toBeLessThan(300);
  });
});
