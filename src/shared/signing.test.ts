import { describe, expect, it } from "vitest";
import {
  CONTENT_HASH_HEADER,
  MIN_SECRET_LENGTH,
  NONCE_HEADER,
  NonceMemory,
  SIGNATURE_HEADER,
  SIGNATURE_WINDOW_SECONDS,
  TIMESTAMP_HEADER,
  secretsProblem,
  signRequest,
  verifyRequest,
} from "./signing.ts";

const headersOf = (h: Record<string, string>) => new Headers(h);

describe("request signing", () => {
  it("verifies what it signed", async () => {
    const h = await signRequest("s3cret", "POST", "/v1/runs/start", '{"a":1}');
    expect(await verifyRequest(["s3cret"], "POST", "/v1/runs/start", headersOf({ ...h }), '{"a":1}')).toMatchObject({
      ok: true,
      nonce: h[NONCE_HEADER],
    });
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
    expect(h[SIGNATURE_HEADER]).toMatch(/^v3=[0-9a-f]{64}$/);
  });

  it("reads the body only for a request whose signature over its headers is valid (a forged one is refused unread)", async () => {
    let reads = 0;
    const body = async () => {
      reads++;
      return '{"a":1}';
    };
    const fresh = await signRequest("s3cret", "POST", "/x", '{"a":1}');
    const stale = await signRequest("s3cret", "POST", "/x", '{"a":1}', Date.now() - (SIGNATURE_WINDOW_SECONDS + 5) * 1000);
    const refusedUnread = [
      headersOf({}),
      headersOf({ ...stale }),
      headersOf({ ...fresh, [NONCE_HEADER]: "not-a-nonce" }),
      headersOf({ ...fresh, [SIGNATURE_HEADER]: "v3=zz" }),
      // Fresh and well-formed, but signed with another secret, or for another body's hash.
      headersOf({ ...(await signRequest("not-the-secret", "POST", "/x", '{"a":1}')) }),
      headersOf({ ...fresh, [CONTENT_HASH_HEADER]: (await signRequest("s3cret", "POST", "/x", "other"))[CONTENT_HASH_HEADER] }),
      // v2 (the hash only inside the signature) is no longer accepted.
      headersOf({ ...fresh, [SIGNATURE_HEADER]: fresh[SIGNATURE_HEADER].replace("v3=", "v2=") }),
    ];
    for (const h of refusedUnread) expect((await verifyRequest(["s3cret"], "POST", "/x", h, body)).ok).toBe(false);
    expect(reads).toBe(0);
    expect(await verifyRequest(["s3cret"], "POST", "/x", headersOf({ ...fresh }), body)).toMatchObject({ ok: true });
    expect(reads).toBe(1);
  });

  it("a signed hash whose body is another is refused once the body is read", async () => {
    const h = await signRequest("s3cret", "POST", "/x", '{"a":1}');
    expect(await verifyRequest(["s3cret"], "POST", "/x", headersOf({ ...h }), async () => '{"a":2}')).toEqual({
      ok: false,
      reason: "bad_signature",
    });
  });

  it("accepts either secret during a rotation", async () => {
    const h = headersOf({ ...(await signRequest("old", "GET", "/x", "")) });
    expect(await verifyRequest(["new", "old"], "GET", "/x", h, "")).toMatchObject({ ok: true });
  });

  it("signs each request with a fresh nonce, which the signature covers", async () => {
    const a = await signRequest("s3cret", "GET", "/x", "");
    const b = await signRequest("s3cret", "GET", "/x", "");
    expect(a[NONCE_HEADER]).toMatch(/^[0-9a-f]{32}$/);
    expect(a[NONCE_HEADER]).not.toBe(b[NONCE_HEADER]);
    const swapped = headersOf({ ...a, [NONCE_HEADER]: b[NONCE_HEADER] });
    expect(await verifyRequest(["s3cret"], "GET", "/x", swapped, "")).toEqual({ ok: false, reason: "bad_signature" });
  });

  it("a nonce can be claimed once while its window lasts", () => {
    const memory = new NonceMemory();
    const now = Date.now();
    expect(memory.claim("n1", now + 1000, now)).toBe(true);
    expect(memory.claim("n1", now + 1000, now)).toBe(false);
    expect(memory.claim("n2", now + 1000, now)).toBe(true);
  });
});

describe("secret length (HMAC-SHA256 keys)", () => {
  const long = "k".repeat(MIN_SECRET_LENGTH);
  it("security: every value of the list must be at least MIN_SECRET_LENGTH (32) characters; the problem names the setting, never the value", () => {
    expect(MIN_SECRET_LENGTH).toBe(32);
    expect(secretsProblem("HOST_SHARED_SECRET", [long])).toBeUndefined();
    expect(secretsProblem("HOST_SHARED_SECRET", [long, `${long}-old`])).toBeUndefined();
    expect(secretsProblem("HOST_SHARED_SECRET", [])).toMatch(/^HOST_SHARED_SECRET is not set/);
    const short = "s".repeat(MIN_SECRET_LENGTH - 1);
    for (const [secrets, place] of [
      [["x"], "its value"],
      [[short], "its value"],
      [[long, short], "value 2 of 2"],
      [[short, long], "value 1 of 2"],
    ] as const) {
      const problem = secretsProblem("HOST_SHARED_SECRET", secrets);
      expect(problem).toContain("HOST_SHARED_SECRET");
      expect(problem).toContain(place);
      expect(problem).toContain(`${MIN_SECRET_LENGTH} characters`);
      expect(problem).not.toContain(short);
    }
  });
});
