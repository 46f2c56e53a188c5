/**
 * INTERNAL_SERVICE_SECRET as a comma-separated list (src/middleware/service-auth), so it rotates
 * without downtime like ADMIN_API_KEY: every listed value is accepted, blank entries are no
 * secret, and a value dropped from the list is refused. Each request goes through the real Worker
 * app with INTERNAL_SERVICE_SECRET as given (the rest of the bindings as configured; real D1).
 */
import { createExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { SignJWT } from "jose";
import { beforeAll, describe, expect, it, vi } from "vitest";
import app from "../../src/index.ts";
import { MIN_SECRET_LENGTH } from "../../src/shared/signing.ts";
import { errorCodeOf, seedOrganization } from "./helpers.ts";

// Test-only values.
const OLD = "edge-test-internal-old-of-32-characters";
const NEW = "edge-test-internal-new-of-32-characters";

let organizationId: string;
beforeAll(async () => {
  organizationId = (await seedOrganization()).organizationId;
});

/** Lists runs as a trusted internal caller presenting `bearer`, with INTERNAL_SERVICE_SECRET set to `configured`. */
async function listAs(configured: string, bearer: string, headers: Record<string, string> = { "x-organization-id": organizationId }) {
  const request = new Request("http://edge.test/api/v1/workflow-runs", { headers: { authorization: `Bearer ${bearer}`, ...headers } });
  const res = await app.fetch(request, { ...env, INTERNAL_SERVICE_SECRET: configured } as Env, createExecutionContext());
  return {
    status: res.status,
    code: errorCodeOf(await res.json().catch(() => ({}))),
    wwwAuthenticate: res.headers.get("www-authenticate"),
  };
}

describe("INTERNAL_SERVICE_SECRET rotation (happy)", () => {
  it("accepts both the new and the old secret while the list holds new,old", async () => {
    expect((await listAs(`${NEW},${OLD}`, NEW)).status).toBe(200);
    expect((await listAs(`${NEW},${OLD}`, OLD)).status).toBe(200);
  });

  it("accepts each value with whitespace around the entries, and a single value as before", async () => {
    expect((await listAs(` ${NEW} , ${OLD} `, NEW)).status).toBe(200);
    expect((await listAs(` ${NEW} , ${OLD} `, OLD)).status).toBe(200);
    expect((await listAs(NEW, NEW)).status).toBe(200);
  });
});

describe("INTERNAL_SERVICE_SECRET rotation (errors)", () => {
  it("refuses the old secret with 401 once the list holds new alone", async () => {
    const refused = await listAs(NEW, OLD);
    expect(refused).toMatchObject({ status: 401, code: "unauthorized" });
    expect(refused.wwwAuthenticate).toContain("Bearer");
    expect((await listAs(NEW, NEW)).status).toBe(200);
  });

  it("still requires X-Organization-Id with any listed secret (400)", async () => {
    expect(await listAs(`${NEW},${OLD}`, OLD, {})).toMatchObject({ status: 400, code: "invalid_request" });
  });
});

describe("INTERNAL_SERVICE_SECRET rotation (security)", () => {
  it("the whole list, or a part of one value, is not a secret", async () => {
    expect(await listAs(`${NEW},${OLD}`, `${NEW},${OLD}`)).toMatchObject({ status: 401, code: "unauthorized" });
    expect(await listAs(`${NEW},${OLD}`, NEW.slice(0, -1))).toMatchObject({ status: 401, code: "unauthorized" });
  });

  it("empty and blank entries never make an empty or blank secret valid", async () => {
    for (const configured of [",", " , ", `${NEW},,${OLD},`, `, ${NEW}`]) {
      for (const bearer of [",", " , ", ",,"]) {
        expect(await listAs(configured, bearer), `${JSON.stringify(configured)} / ${JSON.stringify(bearer)}`).toMatchObject({
          status: 401,
          code: "unauthorized",
        });
      }
    }
    // No credential at all (a blank bearer token) stays a 401 too.
    expect(await listAs(`${NEW},,`, " ")).toMatchObject({ status: 401, code: "unauthorized" });
  });

  it("a list of blank entries turns internal calls off, and JWTs still work", async () => {
    expect(await listAs(" , ", NEW)).toMatchObject({ status: 401, code: "unauthorized" });
    const jwt = await new SignJWT({ org_id: organizationId })
      .setProtectedHeader({ alg: "HS256" })
      .setExpirationTime("5m")
      .sign(new TextEncoder().encode(env.JWT_SECRET));
    expect((await listAs(" , ", jwt, {})).status).toBe(200);
  });
});

describe("INTERNAL_SERVICE_SECRET (security): a value short enough to be found by trying is no secret", () => {
  it("internal calls are a logged 500 (never the value), even presenting that value; JWTs still work", async () => {
    const short = "s".repeat(MIN_SECRET_LENGTH - 1);
    const errors = vi.spyOn(console, "error").mockImplementation(() => {});
    try {
      for (const configured of [short, `${NEW},${short}`]) {
        for (const bearer of [short, NEW]) {
          expect(await listAs(configured, bearer), `${configured.length} / ${bearer.length}`).toMatchObject({
            status: 500,
            code: "internal_error",
          });
        }
      }
      const logged = errors.mock.calls.map((args) => args.join(" ")).join("\n");
      expect(logged).toContain("INTERNAL_SERVICE_SECRET is too short");
      expect(logged).not.toContain(short);
    } finally {
      errors.mockRestore();
    }
    const jwt = await new SignJWT({ org_id: organizationId })
      .setProtectedHeader({ alg: "HS256" })
      .setExpirationTime("5m")
      .sign(new TextEncoder().encode(env.JWT_SECRET));
    expect((await listAs(short, jwt, {})).status).toBe(200);
    // 32 characters are enough.
    const enough = "e".repeat(MIN_SECRET_LENGTH);
    expect((await listAs(enough, enough)).status).toBe(200);
  });
});
