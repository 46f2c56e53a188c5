/** noSniff() on its own, in a minimal app with the edge's error handler. */
import { Hono } from "hono";
import { describe, expect, it } from "vitest";
import type { AppEnv } from "../../app-env.ts";
import { ApiError, handleError } from "../../errors.ts";
import { noSniff } from "./index.ts";

const app = new Hono<AppEnv>();
app.use("*", noSniff());
app.get("/json", (c) => c.json({ ok: true }));
app.get(
  "/stream",
  () => new Response(new ReadableStream({ start: (ctl) => ctl.close() }), { headers: { "content-type": "text/event-stream" } }),
);
app.get("/error", () => {
  throw new ApiError("invalid_request", "<script>alert(1)</script>");
});
app.onError(handleError);

describe("noSniff", () => {
  it("every answer says nosniff: JSON, an event stream, an error, and a 404", async () => {
    for (const path of ["/json", "/stream", "/error", "/missing"]) {
      const res = await app.request(path);
      expect([path, res.headers.get("x-content-type-options")]).toEqual([path, "nosniff"]);
    }
  });
});
