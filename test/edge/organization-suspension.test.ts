/**
 * Suspending an organization (POST /admin/v1/organizations/:orgId/suspend, …/resume): the admin
 * routes, and the refusal (403 organization_suspended) of every tenant credential the edge accepts
 * within the documented bound of the isolate's caches.
 */
import { env } from "cloudflare:workers";
import { SignJWT } from "jose";
import { afterEach, describe, expect, it, vi } from "vitest";
import { ORGANIZATION_STATUS_CACHE_TTL_MS } from "../../src/lib/organization-status.ts";
import { API_KEY_CACHE_TTL_MS } from "../../src/middleware/api-key-auth/index.ts";
import { mintStreamToken } from "../../src/stream-tokens.ts";
import { admin, call, createPromptWorkflow, type ErrorBody, errorCodeOf, seedOrganization } from "./helpers.ts";

const INTERNAL_SECRET = "edge-test-internal-secret-of-32-characters";

type OrgView = {
  id: string;
  status: string;
  suspendedAt: string | null;
  suspensionReason: string | null;
  effectiveWithinMs?: number;
};

const suspend = (orgId: string, body: unknown = { reason: "unpaid invoice 2026-11" }) =>
  admin("POST", `/admin/v1/organizations/${orgId}/suspend`, body);
const resume = (orgId: string) => admin("POST", `/admin/v1/organizations/${orgId}/resume`);
const view = async (orgId: string) => (await (await admin("GET", `/admin/v1/organizations/${orgId}`)).json()) as OrgView;

const realNow = Date.now.bind(Date);
/** Every clock the edge's caches read is `ms` ahead of the real one (the isolate's caches expire as they would). */
function clockAhead(ms: number): void {
  vi.spyOn(Date, "now").mockImplementation(() => realNow() + ms);
}

afterEach(() => {
  vi.restoreAllMocks();
});

/** One request of each tenant credential and route family, as the organization's own caller would send it. */
async function tenantRequests(org: { organizationId: string; key: string; keyId: string }, publishedWorkflowId: string) {
  const bearer = { authorization: `Bearer ${org.key}` };
  const workflowId = `suspension-${crypto.randomUUID()}`;
  const { token } = await mintStreamToken(env.STREAM_TOKEN_SECRET, { organizationId: org.organizationId, apiKeyId: org.keyId, workflowId });
  const jwt = await new SignJWT({ org_id: org.organizationId, sub: "user_1" })
    .setProtectedHeader({ alg: "HS256" })
    .setExpirationTime("5m")
    .sign(new TextEncoder().encode(env.JWT_SECRET));
  const json = { ...bearer, "content-type": "application/json" };
  return {
    "API key, Workflow API read (GET /workflow/catalog)": () => call("/workflow/catalog", { headers: bearer }),
    "API key, Workflow API start (POST /workflow/start)": () =>
      call("/workflow/start", { method: "POST", headers: json, body: JSON.stringify({ workflowName: "hello", input: { name: "x" } }) }),
    "API key, Basic (Output's CLI)": () => call("/workflow/catalog", { headers: { authorization: `Basic ${org.key}` } }),
    "API key, interaction (POST /workflow/:id/signal/:name)": () =>
      call(`/workflow/${workflowId}/signal/resume`, { method: "POST", headers: json, body: "{}" }),
    "API key, heartbeat": () => call("/heartbeat", { method: "POST", headers: bearer }),
    "API key, published run (POST /api/v1/run/:id)": () =>
      call(`/api/v1/run/${publishedWorkflowId}`, { method: "POST", headers: json, body: JSON.stringify({ audience: "a", topic: "b" }) }),
    "stream token, history stream": () => call(`/workflow/${workflowId}/history/stream?token=${token}`),
    "stream token, run viewer's events": () => call(`/runs/${workflowId}/events?token=${token}`),
    "JWT, Workflow Runs API": () => call("/api/v1/workflow-runs", { headers: { authorization: `Bearer ${jwt}` } }),
    "internal service secret, Workflow Runs API": () =>
      call("/api/v1/workflow-runs", { headers: { authorization: `Bearer ${INTERNAL_SECRET}`, "x-organization-id": org.organizationId } }),
  };
}

/** The status and error code (null when none) of each request. */
async function answers(requests: Record<string, () => Promise<Response>>): Promise<Record<string, [number, string | null]>> {
  const out: Record<string, [number, string | null]> = {};
  for (const [name, send] of Object.entries(requests)) {
    const res = await send();
    const text = await res.text();
    let code: string | null = null;
    try {
      code = errorCodeOf(JSON.parse(text)) ?? null;
    } catch {
      /* not JSON: a stream or an empty body */
    }
    out[name] = [res.status, code];
  }
  return out;
}

describe("admin API: suspend and resume an organization", () => {
  it("a new organization is active; suspend records when and why, GET shows it; resume clears it", async () => {
    const { organizationId } = await seedOrganization();
    expect(await view(organizationId)).toMatchObject({ status: "active", suspendedAt: null, suspensionReason: null });

    const suspended = await suspend(organizationId, { reason: "  abuse report #42  " });
    expect(suspended.status).toBe(200);
    const body = (await suspended.json()) as OrgView;
    expect(body).toMatchObject({
      id: organizationId,
      status: "suspended",
      suspensionReason: "abuse report #42",
      effectiveWithinMs: ORGANIZATION_STATUS_CACHE_TTL_MS,
    });
    expect(Date.parse(body.suspendedAt!)).not.toBeNaN();
    expect(await view(organizationId)).toMatchObject({
      status: "suspended",
      suspendedAt: body.suspendedAt,
      suspensionReason: "abuse report #42",
    });

    const resumed = await resume(organizationId);
    expect(resumed.status).toBe(200);
    expect(await resumed.json()).toMatchObject({ status: "active", suspendedAt: null, suspensionReason: null });
    expect(await view(organizationId)).toMatchObject({ status: "active", suspendedAt: null, suspensionReason: null });
  });

  it("is idempotent: a second suspension is 200 and keeps the first one's time and reason; resuming an active organization is 200", async () => {
    const { organizationId } = await seedOrganization();
    const first = (await (await suspend(organizationId, { reason: "first" })).json()) as OrgView;
    const again = await suspend(organizationId, { reason: "second" });
    expect(again.status).toBe(200);
    expect(await again.json()).toMatchObject({ status: "suspended", suspendedAt: first.suspendedAt, suspensionReason: "first" });
    expect((await resume(organizationId)).status).toBe(200);
    const twice = await resume(organizationId);
    expect(twice.status).toBe(200);
    expect(await twice.json()).toMatchObject({ status: "active", suspendedAt: null });
  });

  it("lists show each organization's status", async () => {
    const { organizationId } = await seedOrganization();
    await suspend(organizationId);
    const list = (await (await admin("GET", "/admin/v1/organizations?limit=500")).json()) as { organizations: OrgView[] };
    expect(list.organizations.find((o) => o.id === organizationId)).toMatchObject({ status: "suspended" });
  });

  it("an unknown organization is 404 organization_not_found, as on the other admin organization routes", async () => {
    for (const id of ["org_nope_nope", "x".repeat(300)]) {
      for (const res of [await suspend(id), await resume(id)]) {
        expect(res.status).toBe(404);
        expect(((await res.json()) as ErrorBody).error.code).toBe("organization_not_found");
      }
    }
  });

  it("bad input is 400 with a code, and suspends nothing", async () => {
    const { organizationId } = await seedOrganization();
    for (const body of [
      {},
      { reason: "" },
      { reason: "   " },
      { reason: "x".repeat(501) },
      { reason: "a\u001b[2Jb" },
      { reason: 7 },
      { reason: "ok", extra: 1 },
    ]) {
      const res = await suspend(organizationId, body);
      expect([JSON.stringify(body).slice(0, 40), res.status, ((await res.json()) as ErrorBody).error.code]).toEqual([
        JSON.stringify(body).slice(0, 40),
        400,
        "invalid_request",
      ]);
    }
    const notJson = await suspend(organizationId, "{reason:");
    expect([notJson.status, ((await notJson.json()) as ErrorBody).error.code]).toEqual([400, "invalid_json"]);
    expect(await view(organizationId)).toMatchObject({ status: "active", suspendedAt: null });
  });

  it("security: only the admin key suspends or resumes; a tenant's own key is 401", async () => {
    const org = await seedOrganization();
    for (const key of [org.key, "not-the-admin-key", ""]) {
      expect((await admin("POST", `/admin/v1/organizations/${org.organizationId}/suspend`, { reason: "x" }, key)).status).toBe(401);
    }
    await suspend(org.organizationId);
    expect((await admin("POST", `/admin/v1/organizations/${org.organizationId}/resume`, undefined, org.key)).status).toBe(401);
    expect((await view(org.organizationId)).status).toBe("suspended");
  });
});

describe("security: a suspended organization's credentials reach no route family", () => {
  it("every credential of the organization is 403 organization_suspended once the caches' bound has passed; another organization is unaffected; resume restores access", async () => {
    const suspended = await seedOrganization("To be suspended");
    const other = await seedOrganization("Unaffected");
    const suspendedRequests = await tenantRequests(suspended, await createPromptWorkflow(suspended.organizationId));
    const otherRequests = await tenantRequests(other, await createPromptWorkflow(other.organizationId));

    // Before: every request passes authentication (whatever the route then answers), and fills this isolate's caches.
    const before = await answers(suspendedRequests);
    for (const [name, [status, code]] of Object.entries(before)) {
      expect([name, code === "unauthorized" || code === "organization_suspended" || status === 403]).toEqual([name, false]);
    }

    expect((await suspend(suspended.organizationId)).status).toBe(200);
    // The documented bound: every isolate has read the organization's status again (and its keys) by then.
    clockAhead(Math.max(ORGANIZATION_STATUS_CACHE_TTL_MS, API_KEY_CACHE_TTL_MS) + 1);
    const during = await answers(suspendedRequests);
    for (const name of Object.keys(suspendedRequests)) expect([name, ...during[name]!]).toEqual([name, 403, "organization_suspended"]);

    // The other organization's callers are answered as before.
    const others = await answers(otherRequests);
    for (const [name, [status, code]] of Object.entries(others))
      expect([name, status === 403 || code === "unauthorized"]).toEqual([name, false]);

    expect((await resume(suspended.organizationId)).status).toBe(200);
    clockAhead(2 * (Math.max(ORGANIZATION_STATUS_CACHE_TTL_MS, API_KEY_CACHE_TTL_MS) + 1));
    const after = await answers(suspendedRequests);
    for (const name of Object.keys(suspendedRequests)) expect([name, after[name]![0]]).toEqual([name, before[name]![0]]);
  });

  it("the isolate that takes a suspension or a resume applies it at once, its cache of the organization's status included (the others within the bound)", async () => {
    const org = await seedOrganization();
    const catalog = () => call("/workflow/catalog", { headers: { authorization: `Bearer ${org.key}` } });
    expect((await catalog()).status).toBe(200); // the key and the organization's status cached here
    expect((await suspend(org.organizationId)).status).toBe(200);
    const refused = await catalog();
    expect([refused.status, errorCodeOf(await refused.json())]).toEqual([403, "organization_suspended"]);
    expect((await resume(org.organizationId)).status).toBe(200);
    expect((await catalog()).status).toBe(200);
  });

  it("the 403 is told only to a caller whose credential checks out: a wrong secret of the suspended organization's key is still 401, the right one 403", async () => {
    const org = await seedOrganization();
    await suspend(org.organizationId);
    clockAhead(ORGANIZATION_STATUS_CACHE_TTL_MS + API_KEY_CACHE_TTL_MS);
    const wrong = org.key.slice(0, -4) + (org.key.endsWith("AAAA") ? "BBBB" : "AAAA");
    const res = await call("/workflow/catalog", { headers: { authorization: `Bearer ${wrong}` } });
    expect([res.status, errorCodeOf(await res.json())]).toEqual([401, "unauthorized"]);
    const right = await call("/workflow/catalog", { headers: { authorization: `Bearer ${org.key}` } });
    expect([right.status, errorCodeOf(await right.json())]).toEqual([403, "organization_suspended"]);
    // A JWT naming the organization without a valid signature: 401 too.
    const forged = await new SignJWT({ org_id: org.organizationId })
      .setProtectedHeader({ alg: "HS256" })
      .setExpirationTime("5m")
      .sign(new TextEncoder().encode("not-the-jwt-secret-but-long-enough-32"));
    const jwt = await call("/api/v1/workflow-runs", { headers: { authorization: `Bearer ${forged}` } });
    expect([jwt.status, errorCodeOf(await jwt.json())]).toEqual([401, "unauthorized"]);
  });

  it("the 403 names the code in Output's envelope on the Workflow API, and never the operator's reason", async () => {
    const org = await seedOrganization();
    await suspend(org.organizationId, { reason: "secret-operator-note" });
    clockAhead(ORGANIZATION_STATUS_CACHE_TTL_MS + API_KEY_CACHE_TTL_MS);
    const res = await call("/workflow/catalog", { headers: { authorization: `Bearer ${org.key}` } });
    expect(res.status).toBe(403);
    const text = await res.text();
    expect(JSON.parse(text)).toMatchObject({ error: "OrganizationSuspendedError", code: "organization_suspended" });
    expect(text).not.toContain("secret-operator-note");
  });
});
