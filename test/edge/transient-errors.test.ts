/**
 * A read that authenticates or rate-limits a request, failing with an error of the platform that
 * a retry fixes, is 503 service_unavailable with Retry-After ("try again and it will work"), not a
 * 500; so is a GET whose own reads meet one (it changed nothing). Any other error, and a write's,
 * stays a 500. The platform's errors are played by bindings that throw them.
 */
import { createExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import app from "../../src/index.ts";
import { clearApiKeyCache } from "../../src/middleware/api-key-auth/index.ts";
import { errorCodeOf, seedOrganization, TEST_ADMIN_KEY } from "./helpers.ts";

/** An Error as Cloudflare throws it from a Durable Object call, with its flags. */
const platformError = (message: string, flags: { retryable?: boolean; overloaded?: boolean } = {}) =>
  Object.assign(new Error(message), flags);

/** A RATE_LIMITER whose every call throws `err`. */
const failingLimiter = (err: Error) =>
  ({
    idFromName: (name: string) => env.RATE_LIMITER.idFromName(name),
    get: () => ({ hit: () => Promise.reject(err) }),
  }) as unknown as Env["RATE_LIMITER"];

/** A D1 whose every statement throws `err` (as D1 itself, and the query builder over it, would see it). */
const failingD1 = (err: Error) =>
  new Proxy(env.DB, {
    get: (target, prop) =>
      prop === "prepare"
        ? () => {
            throw err;
          }
        : Reflect.get(target, prop),
  });

async function catalog(key: string, bindings: Partial<Env>) {
  const request = new Request("http://edge.test/workflow/catalog", { headers: { authorization: `Bearer ${key}` } });
  const res = await app.fetch(request, { ...env, ...bindings } as Env, createExecutionContext());
  return { status: res.status, code: errorCodeOf(await res.json()), retryAfter: res.headers.get("retry-after") };
}

describe("transient platform errors in auth and rate limiting", () => {
  let key: string;
  beforeAll(async () => {
    ({ key } = await seedOrganization());
  });

  it("the rate limiter's Durable Object retryable or overloaded: 503 service_unavailable with Retry-After", async () => {
    for (const flags of [{ retryable: true }, { overloaded: true }]) {
      const answer = await catalog(key, { RATE_LIMITER: failingLimiter(platformError("Durable Object reset", flags)) });
      expect(answer, JSON.stringify(flags)).toEqual({ status: 503, code: "service_unavailable", retryAfter: "1" });
    }
  });

  it("the key lookup's D1 read lost its connection: 503 service_unavailable with Retry-After", async () => {
    clearApiKeyCache();
    const answer = await catalog(key, { DB: failingD1(new Error("D1_ERROR: Network connection lost.")) });
    expect(answer).toEqual({ status: 503, code: "service_unavailable", retryAfter: "1" });
  });

  it("the Workflow Runs API's organization check on a transient D1 error: 503", async () => {
    const request = new Request("http://edge.test/api/v1/workflow-runs", {
      headers: { authorization: `Bearer ${env.INTERNAL_SERVICE_SECRET}`, "x-organization-id": `org_${crypto.randomUUID()}` },
    });
    const bindings = { DB: failingD1(new Error("D1_ERROR: D1 DB is overloaded. Too many requests queued.")) };
    const res = await app.fetch(request, { ...env, ...bindings } as Env, createExecutionContext());
    expect([res.status, errorCodeOf(await res.json()), res.headers.get("retry-after")]).toEqual([503, "service_unavailable", "1"]);
  });

  it("the made-up-key counter failing leaves an unknown key's answer a 401, not a 500", async () => {
    const counter = { limit: () => Promise.reject(platformError("rate limiter unavailable")) } as unknown as Env["UNKNOWN_API_KEY_LOOKUPS"];
    const answer = await catalog(`otr_${crypto.randomUUID().replaceAll("-", "").slice(0, 20)}_${"B".repeat(32)}`, {
      UNKNOWN_API_KEY_LOOKUPS: counter,
    });
    expect(answer).toEqual({ status: 401, code: "unauthorized", retryAfter: null });
  });

  it("errors that a retry would not fix stay 500 internal_error, without Retry-After", async () => {
    const answer = await catalog(key, { RATE_LIMITER: failingLimiter(platformError("TypeError: hit is not a function")) });
    expect(answer).toEqual({ status: 500, code: "internal_error", retryAfter: null });
    clearApiKeyCache();
    const sql = await catalog(key, { DB: failingD1(new Error("D1_ERROR: no such column: secret_sha256")) });
    expect(sql).toEqual({ status: 500, code: "internal_error", retryAfter: null });
  });
});

describe("transient platform errors in a route's own work", () => {
  const lost = () => failingD1(new Error("D1_ERROR: Network connection lost."));
  const call = async (path: string, init: RequestInit, bindings: Partial<Env>) => {
    const res = await app.fetch(new Request(`http://edge.test${path}`, init), { ...env, ...bindings } as Env, createExecutionContext());
    return { status: res.status, code: errorCodeOf(await res.json()), retryAfter: res.headers.get("retry-after") };
  };
  const asAdmin = { authorization: `Bearer ${TEST_ADMIN_KEY}` };

  it("a GET whose D1 read lost its connection (the admin API's lists, a run list) is 503 service_unavailable with Retry-After: it changed nothing", async () => {
    expect(await call("/admin/v1/organizations", { headers: asAdmin }, { DB: lost() })).toEqual({
      status: 503,
      code: "service_unavailable",
      retryAfter: "1",
    });
    const { key } = await seedOrganization();
    expect((await catalog(key, {})).status).toBe(200); // the key, cached: the list's own read is the one that fails
    expect(await call("/workflow/runs", { headers: { authorization: `Bearer ${key}` } }, { DB: lost() })).toEqual({
      status: 503,
      code: "service_unavailable",
      retryAfter: "1",
    });
  });

  it("a write that meets it stays 500 internal_error, without Retry-After: it may have been applied", async () => {
    const init = { method: "POST", headers: { ...asAdmin, "content-type": "application/json" }, body: JSON.stringify({ name: "Acme" }) };
    expect(await call("/admin/v1/organizations", init, { DB: lost() })).toEqual({ status: 500, code: "internal_error", retryAfter: null });
  });
});
