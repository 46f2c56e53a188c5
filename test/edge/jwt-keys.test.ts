/**
 * The keys that verify the Workflow Runs API's JWTs (src/middleware/service-auth): when our side
 * cannot get or use them, the answer says so (503 with Retry-After, or 500), never 401: the
 * caller's token was not what failed. A token our keys do not verify is still 401. Each request
 * goes through the real Worker app with the JWT settings as given (the rest as configured).
 */
import { createExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { exportJWK, exportSPKI, generateKeyPair, SignJWT } from "jose";
import { beforeAll, describe, expect, it, vi } from "vitest";
import app from "../../src/index.ts";
import { MIN_SECRET_LENGTH } from "../../src/shared/signing.ts";
import { errorCodeOf, seedOrganization } from "./helpers.ts";

let organizationId: string;
let rsa: CryptoKeyPair;
beforeAll(async () => {
  organizationId = (await seedOrganization()).organizationId;
  rsa = await generateKeyPair("RS256", { extractable: true });
});

const receiver = () => env.WEBHOOK_TEST_RECEIVER;

/** A JWKS endpoint on the test receiver answering `status` with `body`. */
async function jwksUrl(status: number, body: string): Promise<string> {
  const name = `jwks-${crypto.randomUUID()}`;
  await fetch(`${receiver()}/file/${name}`, { method: "PUT", body: JSON.stringify({ status, body }) });
  return `${receiver()}/file/${name}`;
}

/** The audience these tests configure (JWT_AUDIENCE): a JWKS needs one. */
const AUDIENCE = "outrider-edge-test";

const rs256Token = (kid = "k1", audience = AUDIENCE) =>
  new SignJWT({ org_id: organizationId })
    .setProtectedHeader({ alg: "RS256", kid })
    .setSubject("user-1")
    .setAudience(audience)
    .setExpirationTime("5m")
    .sign(rsa.privateKey);

/** An HS256 token of the test's organization, signed with `secret`. */
const hs256With = (secret: string, expiresIn: string | number = "5m") =>
  new SignJWT({ org_id: organizationId })
    .setProtectedHeader({ alg: "HS256" })
    .setSubject("user-1")
    .setAudience(AUDIENCE)
    .setExpirationTime(expiresIn)
    .sign(new TextEncoder().encode(secret));

async function listWith(settings: Partial<Env>, token: string) {
  const request = new Request("http://edge.test/api/v1/workflow-runs", { headers: { authorization: `Bearer ${token}` } });
  const res = await app.fetch(
    request,
    { ...env, JWT_JWKS_URL: "", JWT_PUBLIC_KEY: "", JWT_AUDIENCE: AUDIENCE, ...settings } as Env,
    createExecutionContext(),
  );
  const body = await res.json().catch(() => ({}));
  return {
    status: res.status,
    code: errorCodeOf(body),
    message: (body as { error?: { message?: string } }).error?.message ?? "",
    retryAfter: res.headers.get("retry-after"),
    wwwAuthenticate: res.headers.get("www-authenticate"),
  };
}

const keySet = async (kid = "k1") => JSON.stringify({ keys: [{ ...(await exportJWK(rsa.publicKey)), kid, alg: "RS256", use: "sig" }] });

describe("JWT keys (happy)", () => {
  it("an RS256 token verifies against a JWKS that answers", async () => {
    expect((await listWith({ JWT_JWKS_URL: await jwksUrl(200, await keySet()) }, await rs256Token())).status).toBe(200);
  });
});

describe("JWT keys (errors): our keys failing is not the caller's credentials failing", () => {
  it("a JWKS that cannot be reached, or answers 5xx, is 503 jwt_keys_unavailable with Retry-After, not 401", async () => {
    for (const url of ["http://127.0.0.1:9/.well-known/jwks.json", await jwksUrl(503, ""), await jwksUrl(502, "")]) {
      const answer = await listWith({ JWT_JWKS_URL: url }, await rs256Token());
      expect(answer, url).toMatchObject({ status: 503, code: "jwt_keys_unavailable", retryAfter: "5", wwwAuthenticate: null });
      // The message names the setting, not the URL.
      expect(answer.message).toContain("JWT_JWKS_URL");
      expect(answer.message).not.toContain(url);
    }
  });

  it("a JWKS URL that answers 4xx or no key set is 500 jwt_keys_invalid: the operator's to fix", async () => {
    for (const url of [await jwksUrl(404, ""), await jwksUrl(200, "[]"), await jwksUrl(200, "not json")]) {
      expect(await listWith({ JWT_JWKS_URL: url }, await rs256Token()), url).toMatchObject({ status: 500, code: "jwt_keys_invalid" });
    }
  });

  it("a JWT_PUBLIC_KEY that is no public key is 500 jwt_keys_invalid", async () => {
    const broken = "-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----";
    expect(await listWith({ JWT_PUBLIC_KEY: broken }, await rs256Token())).toMatchObject({ status: 500, code: "jwt_keys_invalid" });
  });

  it("a JWKS without JWT_AUDIENCE verifies nothing (500 jwt_keys_invalid naming it): it would take any application's tokens from the provider", async () => {
    const answer = await listWith({ JWT_JWKS_URL: await jwksUrl(200, await keySet()), JWT_AUDIENCE: "" }, await rs256Token());
    expect(answer).toMatchObject({ status: 500, code: "jwt_keys_invalid" });
    expect(answer.message).toContain("JWT_AUDIENCE");
  });

  it("HS256 tokens (JWT_SECRET) still work while the JWKS is down", async () => {
    const hs = await new SignJWT({ org_id: organizationId })
      .setProtectedHeader({ alg: "HS256" })
      .setAudience(AUDIENCE)
      .setExpirationTime("5m")
      .sign(new TextEncoder().encode(env.JWT_SECRET));
    expect((await listWith({ JWT_JWKS_URL: "http://127.0.0.1:9/.well-known/jwks.json" }, hs)).status).toBe(200);
  });
});

describe("JWT keys (errors): a JWKS that fails", () => {
  /** Runs `fn` counting the Worker's fetches of `url` (the app runs in this isolate). */
  async function countingFetches<T>(url: string, fn: () => Promise<T>): Promise<{ result: T; fetches: number }> {
    const original = globalThis.fetch;
    let fetches = 0;
    globalThis.fetch = ((input: RequestInfo | URL, init?: RequestInit) => {
      if (String(input instanceof Request ? input.url : input).startsWith(url)) fetches++;
      return original(input, init);
    }) as typeof fetch;
    try {
      return { result: await fn(), fetches };
    } finally {
      globalThis.fetch = original;
    }
  }

  it("while it fails, requests within Retry-After are answered 503 at once: one fetch, not one per request", async () => {
    const url = await jwksUrl(503, "");
    const { result, fetches } = await countingFetches(url, async () => {
      const answers = [];
      for (let i = 0; i < 20; i++) answers.push(await listWith({ JWT_JWKS_URL: url }, await rs256Token(crypto.randomUUID())));
      return answers;
    });
    for (const answer of result) expect(answer).toMatchObject({ status: 503, code: "jwt_keys_unavailable" });
    // Retry-After says how long is left of the pause, never more than the first answer's.
    for (const answer of result) expect(Number(answer.retryAfter)).toBeGreaterThanOrEqual(1);
    for (const answer of result) expect(Number(answer.retryAfter)).toBeLessThanOrEqual(5);
    expect(fetches).toBe(1);
  });

  it("security: a token no retry could verify (expired, malformed, no exp) is 401 while the JWKS is down, and fetches nothing", async () => {
    const url = "http://127.0.0.1:9/.well-known/jwks-down.json";
    const b64 = (value: unknown) => btoa(JSON.stringify(value)).replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_");
    const expired = await new SignJWT({ org_id: organizationId })
      .setProtectedHeader({ alg: "RS256", kid: "k1" })
      .setAudience(AUDIENCE)
      .setExpirationTime(Math.floor(Date.now() / 1000) - 60)
      .sign(rsa.privateKey);
    const tokens = [
      expired,
      `${b64({ alg: "RS256", kid: crypto.randomUUID() })}.${b64({ exp: 1 })}.AAAA`,
      `${b64({ alg: "RS256", kid: "k1" })}.${b64({ org_id: organizationId })}.AAAA`,
      `${b64({ alg: "RS256", kid: "k1" })}.bm90IGpzb24.AAAA`,
    ];
    const { result, fetches } = await countingFetches(url, () =>
      Promise.all(tokens.map((token) => listWith({ JWT_JWKS_URL: url }, token))),
    );
    for (const [i, answer] of result.entries())
      expect(answer, `token ${i}`).toMatchObject({ status: 401, code: "unauthorized", retryAfter: null });
    expect(fetches).toBe(0);
  });

  it("a key set with a key that cannot be imported, or with no keys, is 500 jwt_keys_invalid, not the caller's 401", async () => {
    const jwk = await exportJWK(rsa.publicKey);
    for (const body of [JSON.stringify({ keys: [{ ...jwk, n: "AAAA", kid: "k1", alg: "RS256" }] }), JSON.stringify({ keys: [] })]) {
      const answer = await listWith({ JWT_JWKS_URL: await jwksUrl(200, body) }, await rs256Token());
      expect(answer, body.slice(0, 40)).toMatchObject({ status: 500, code: "jwt_keys_invalid" });
    }
  });
});

describe("JWT keys (happy): key rotation", () => {
  it("two keys in the set and a token without a kid: the key that signed it verifies it", async () => {
    const next = await generateKeyPair("RS256", { extractable: true });
    const keys = [await exportJWK(rsa.publicKey), await exportJWK(next.publicKey)].map((jwk) => ({ ...jwk, alg: "RS256", use: "sig" }));
    const url = await jwksUrl(200, JSON.stringify({ keys }));
    for (const key of [rsa.privateKey, next.privateKey]) {
      const token = await new SignJWT({ org_id: organizationId })
        .setProtectedHeader({ alg: "RS256" })
        .setSubject("user-1")
        .setAudience(AUDIENCE)
        .setExpirationTime("5m")
        .sign(key);
      expect((await listWith({ JWT_JWKS_URL: url }, token)).status).toBe(200);
    }
    const stranger = await new SignJWT({ org_id: organizationId })
      .setProtectedHeader({ alg: "RS256" })
      .setAudience(AUDIENCE)
      .setExpirationTime("5m")
      .sign((await generateKeyPair("RS256")).privateKey);
    expect(await listWith({ JWT_JWKS_URL: url }, stranger)).toMatchObject({ status: 401, code: "unauthorized" });
  });
});

describe("JWT keys (security): a token our keys do not verify stays 401", () => {
  it("a kid the JWKS does not have, a forged signature, another audience, or an algorithm the PEM does not take is 401 invalid_token", async () => {
    const url = await jwksUrl(200, await keySet("k1"));
    const other = await generateKeyPair("RS256");
    const forged = await new SignJWT({ org_id: organizationId })
      .setProtectedHeader({ alg: "RS256", kid: "k1" })
      .setAudience(AUDIENCE)
      .setExpirationTime("5m")
      .sign(other.privateKey);
    // Another application's token from the same provider: same keys, another audience.
    for (const token of [await rs256Token("unknown-kid"), forged, await rs256Token("k1", "another-app")]) {
      expect(await listWith({ JWT_JWKS_URL: url }, token)).toMatchObject({ status: 401, code: "unauthorized" });
    }
    // An EC public key, an RSA-signed token: the token is signed the wrong way, the key is fine.
    const ec = await generateKeyPair("ES256", { extractable: true });
    const answer = await listWith({ JWT_PUBLIC_KEY: await exportSPKI(ec.publicKey) }, await rs256Token());
    expect(answer).toMatchObject({ status: 401, code: "unauthorized" });
    expect(answer.wwwAuthenticate).toContain("invalid_token");
  });

  it('a "sub" claim that is no string is 401, not 500 and not a rate-limit bucket shared by every such token', async () => {
    const hs256 = (sub: unknown) =>
      new SignJWT({ org_id: organizationId, sub } as Record<string, unknown>)
        .setProtectedHeader({ alg: "HS256" })
        .setAudience(AUDIENCE)
        .setExpirationTime("5m")
        .sign(new TextEncoder().encode(env.JWT_SECRET));
    for (const sub of [{ toString: 1 }, {}, 42, ["user-1"], null]) {
      const answer = await listWith({}, await hs256(sub));
      expect(answer, JSON.stringify(sub)).toMatchObject({ status: 401, code: "unauthorized" });
      expect(answer.message).toContain('"sub"');
    }
    expect((await listWith({}, await hs256("user-1"))).status).toBe(200);
  });
});

describe("JWT keys (security): a JWT_SECRET short enough to be guessed offline verifies nothing", () => {
  it("an HS256 token signed with a JWT_SECRET under 32 characters is 500 jwt_keys_invalid (logged, never the value), not accepted", async () => {
    // One captured token lets anyone test guesses at a short key offline, then sign for any organization.
    const short = "s".repeat(MIN_SECRET_LENGTH - 1);
    const errors = vi.spyOn(console, "error").mockImplementation(() => {});
    try {
      const answer = await listWith({ JWT_SECRET: short }, await hs256With(short));
      expect(answer).toMatchObject({ status: 500, code: "jwt_keys_invalid", wwwAuthenticate: null });
      expect(answer.message).toContain("JWT_SECRET");
      expect(answer.message).not.toContain(short);
      const logged = errors.mock.calls.map((args) => args.join(" ")).join("\n");
      expect(logged).toContain("JWT_SECRET is too short");
      expect(logged).not.toContain(short);
    } finally {
      errors.mockRestore();
    }
    // A JWT_SECRET of 32 characters verifies; no JWT_SECRET still refuses HS256 tokens as the caller's (401).
    const enough = "e".repeat(MIN_SECRET_LENGTH);
    expect((await listWith({ JWT_SECRET: enough }, await hs256With(enough))).status).toBe(200);
    expect(await listWith({ JWT_SECRET: "" }, await hs256With(short))).toMatchObject({ status: 401, code: "unauthorized" });
  });
});

describe("JWT keys: rotating JWT_SECRET with JWT_SECRET_PREVIOUS", () => {
  const current = `current-${"c".repeat(MIN_SECRET_LENGTH)}`;
  const previous = `previous-${"p".repeat(MIN_SECRET_LENGTH)}`;

  it("happy: while both are set, tokens signed with either verify; the current key alone after the rotation", async () => {
    const rotating = { JWT_SECRET: current, JWT_SECRET_PREVIOUS: previous } as Partial<Env>;
    expect((await listWith(rotating, await hs256With(current))).status).toBe(200);
    expect((await listWith(rotating, await hs256With(previous))).status).toBe(200);
    // Once JWT_SECRET_PREVIOUS is removed, the old key's tokens are the caller's to renew (401).
    expect(await listWith({ JWT_SECRET: current }, await hs256With(previous))).toMatchObject({ status: 401, code: "unauthorized" });
  });

  it("error: a token signed with neither key, or expired under the previous key, is 401", async () => {
    const rotating = { JWT_SECRET: current, JWT_SECRET_PREVIOUS: previous } as Partial<Env>;
    const other = await hs256With(`other-${"o".repeat(MIN_SECRET_LENGTH)}`);
    expect(await listWith(rotating, other)).toMatchObject({ status: 401, code: "unauthorized" });
    const expired = await hs256With(previous, Math.floor(Date.now() / 1000) - 60);
    const answer = await listWith(rotating, expired);
    expect(answer).toMatchObject({ status: 401, code: "unauthorized" });
    expect(answer.message).toContain('"exp" claim timestamp check failed');
  });

  it("security: a JWT_SECRET_PREVIOUS under 32 characters verifies nothing (500 jwt_keys_invalid, logged, never the value)", async () => {
    const short = "s".repeat(MIN_SECRET_LENGTH - 1);
    const errors = vi.spyOn(console, "error").mockImplementation(() => {});
    try {
      // Not even a token of the (long) current key: the configuration is the operator's to fix.
      for (const token of [await hs256With(short), await hs256With(current)]) {
        const answer = await listWith({ JWT_SECRET: current, JWT_SECRET_PREVIOUS: short } as Partial<Env>, token);
        expect(answer).toMatchObject({ status: 500, code: "jwt_keys_invalid" });
        expect(answer.message).toContain("JWT_SECRET_PREVIOUS");
        expect(answer.message).not.toContain(short);
      }
      const logged = errors.mock.calls.map((args) => args.join(" ")).join("\n");
      expect(logged).toContain("JWT_SECRET_PREVIOUS is too short");
      expect(logged).not.toContain(short);
    } finally {
      errors.mockRestore();
    }
  });
});
