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

  it("security: an unknown route's 404 quotes a very long path cut short, not whole", async () => {
    const path = `/nope/${"a".repeat(10_000)}`;
    const res = await call(path);
    expect(res.status).toBe(404);
    const body = (await res.json()) as ErrorBody;
    expect(body.error.code).toBe("route_not_found");
    expect(body.error.message).toContain(`no route GET /nope/${"a".repeat(100)}`);
    expect(body.error.message).toMatch(/… \(\d+ more characters\)$/);
    expect(body.error.message.length).toBeLessThan(300);
  });

  it("security: every API answer says X-Content-Type-Options: nosniff (JSON, errors, a 404 quoting the path)", async () => {
    for (const [path, init] of [
      ["/health", {}],
      ["/nope/<script>alert(1)</script>", {}],
      ["/workflow/start", { method: "POST" }],
      ["/openapi.json", {}],
    ] as const) {
      const res = await call(path, init);
      expect([path, res.headers.get("x-content-type-options")]).toEqual([path, "nosniff"]);
      await res.body?.cancel();
    }
  });
});
