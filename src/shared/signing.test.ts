import { describe, expect, it } from "vitest";
import { SIGNATURE_HEADER, SIGNATURE_WINDOW_SECONDS, TIMESTAMP_HEADER, signRequest, verifyRequest } from "./signing.ts";

const headersOf = (h: Record<string, string>) => new Headers(h);

describe("request signing", () => {
  it("verifies what it signed", async () => {
    const h = await signRequest("s3cret", "POST", "/v1/runs/start", '{"a":1}');
    expect(await verifyRequest(["s3cret"], "POST", "/v1/runs/start", headersOf({ ...h }), '{"a":1}')).toEqual({ ok: true });
  });

  it("rejects another body, path, method or secret", async () => {
    const h = headersOf({ ...(await signRequest("s3cret", "POST", "/v1/runs/start", '{"a":1}')) });
    expect(await verifyRequest(["s3cret"], "POST", "/v1/runs/start", h, '{"a":2}')).toEqual({ ok: false, reason: "bad_signature" });
    expect(await verifyRequest(["s3cret"], "POST", "/v1/runs/other", h, '{"a":1}')).toEqual({ ok: false, reason: "bad_signature" });
    expect(await verifyRequest(["s3cret"], "GET", "/v1/runs/start", h, '{"a":1}')).toEqual({ ok: false, reason: "bad_signature" });
    expect(await verifyRequest(["other"], "POST", "/v1/runs/start", h, '{"a":1}')).toEqual({ ok: false, reason: "bad_signature" });
  });

  it("rejects missing and stale signatures", async () => {
    expect(await verifyRequest(["s3cret"], "GET", "/x", headersOf({}), "")).toEqual({ ok: false, reason: "missing_signature" });
    const old = Date.now() - (SIGNATURE_WINDOW_SECONDS + 5) * 1000;
    const h = await signRequest("s3cret", "GET", "/x", "", old);
    expect(await verifyRequest(["s3cret"], "GET", "/x", headersOf({ ...h }), "")).toEqual({ ok: false, reason: "stale_signature" });
    expect(h[TIMESTAMP_HEADER]).toMatch(/^\d+$/);
    expect(h[SIGNATURE_HEADER]).toMatch(/^v1=[0-9a-f]{64}$/);
  });

  it("accepts either secret during a rotation", async () => {
    const h = headersOf({ ...(await signRequest("old", "GET", "/x", "")) });
    expect(await verifyRequest(["new", "old"], "GET", "/x", h, "")).toEqual({ ok: true });
  });
});
