import { describe, expect, it } from "vitest";
import { call, type ErrorBody } from "./helpers.ts";

describe("health and unknown routes", () => {
  it("answers /health without auth", async () => {
    const res = await call("/health");
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ ok: true });
  });

  it("answers an unknown route with the JSON error shape and a request id", async () => {
    const res = await call("/nope", { headers: { "x-request-id": "req-123" } });
    expect(res.status).toBe(404);
    const body = (await res.json()) as ErrorBody;
    expect(body.error.code).toBe("route_not_found");
    expect(body.error.requestId).toBe("req-123");
    expect(res.headers.get("x-request-id")).toBe("req-123");
  });
});
