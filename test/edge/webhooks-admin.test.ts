/** Admin API for webhook endpoints: happy path, errors, and security (secrets, tenants, URLs). */
import { createExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import app from "../../src/index.ts";
import { webhookUrlProblem } from "../../src/webhooks/url-policy.ts";
import { refusedRange } from "../../src/shared/ip-ranges.ts";
import { openSecret, webhookSecretAad } from "../../src/shared/secret-box.ts";
import { admin, seedOrganization, TEST_ADMIN_KEY, type ErrorBody } from "./helpers.ts";

const base = (org: string) => `/admin/v1/organizations/${org}/webhooks`;

describe("webhook endpoints: happy path", () => {
  it("creates (secret shown once), lists without secrets, rotates, lists deliveries and deletes", async () => {
    const { organizationId } = await seedOrganization();
    const created = await admin("POST", base(organizationId), { url: "https://hooks.example.com/outrider" });
    expect(created.status).toBe(201);
    const endpoint = (await created.json()) as { id: string; url: string; events: string[]; secret: string };
    expect(endpoint.id).toMatch(/^whk_[0-9a-f]{20}$/);
    expect(endpoint.url).toBe("https://hooks.example.com/outrider");
    expect(endpoint.events).toEqual(["run.completed", "run.failed", "run.cancelled", "run.terminated", "run.timed_out"]);
    expect(endpoint.secret).toMatch(/^whsec_[A-Za-z0-9+/]{32}$/);

    const some = await admin("POST", base(organizationId), {
      url: "https://other.example.com/h",
      events: ["run.failed", "run.failed", "run.timed_out"],
    });
    expect(((await some.json()) as { events: string[] }).events).toEqual(["run.failed", "run.timed_out"]);

    const list = (await (await admin("GET", base(organizationId))).json()) as { webhooks: Array<Record<string, unknown>> };
    expect(list.webhooks.map((w) => w.id)).toContain(endpoint.id);
    expect(JSON.stringify(list)).not.toContain("whsec_");

    const rotated = (await (await admin("POST", `${base(organizationId)}/${endpoint.id}/rotate-secret`)).json()) as { secret: string };
    expect(rotated.secret).toMatch(/^whsec_/);
    expect(rotated.secret).not.toBe(endpoint.secret);
    // Stored encrypted (test/edge/webhooks-secrets.test.ts); it opens to the secret just shown.
    const stored = await env.DB.prepare("SELECT secret FROM webhook_endpoints WHERE id = ?").bind(endpoint.id).first<{ secret: string }>();
    expect(await openSecret(env.WEBHOOK_SECRET_KEYS, stored!.secret, webhookSecretAad(organizationId, endpoint.id))).toBe(rotated.secret);

    const deliveries = await admin("GET", `${base(organizationId)}/${endpoint.id}/deliveries?limit=10`);
    expect(deliveries.status).toBe(200);
    expect(await deliveries.json()).toEqual({ deliveries: [] });

    const deleted = await admin("DELETE", `${base(organizationId)}/${endpoint.id}`);
    expect(deleted.status).toBe(200);
    expect(((await deleted.json()) as { deletedAt: string }).deletedAt).toBeTypeOf("string");
    const after = (await (await admin("GET", base(organizationId))).json()) as { webhooks: Array<{ id: string }> };
    expect(after.webhooks.map((w) => w.id)).not.toContain(endpoint.id);
    // The delivery log of a deleted endpoint stays readable.
    expect((await admin("GET", `${base(organizationId)}/${endpoint.id}/deliveries`)).status).toBe(200);
  });
});

describe("webhook endpoints: errors", () => {
  it("names each bad request with a stable code", async () => {
    const { organizationId } = await seedOrganization();
    const cases: Array<[unknown, number, string]> = [
      [{}, 400, "invalid_request"],
      [{ url: "https://hooks.example.com", events: [] }, 400, "invalid_request"],
      [{ url: "https://hooks.example.com", events: ["run.started"] }, 400, "invalid_request"],
      [{ url: "https://hooks.example.com", extra: 1 }, 400, "invalid_request"],
      ["{not json", 400, "invalid_json"],
      [{ url: "not a url" }, 400, "webhook_url_not_allowed"],
    ];
    for (const [body, status, code] of cases) {
      const res = await admin("POST", base(organizationId), body);
      expect(res.status, JSON.stringify(body)).toBe(status);
      expect(((await res.json()) as ErrorBody).error.code).toBe(code);
    }
    expect(((await (await admin("POST", base("org_missing"), { url: "https://a.example.com" })).json()) as ErrorBody).error.code).toBe(
      "organization_not_found",
    );
    for (const [method, path] of [
      ["DELETE", `${base(organizationId)}/whk_nope`],
      ["POST", `${base(organizationId)}/whk_nope/rotate-secret`],
      ["GET", `${base(organizationId)}/whk_nope/deliveries`],
      ["DELETE", `${base(organizationId)}/${"x".repeat(200)}`],
    ] as const) {
      const res = await admin(method, path);
      expect(res.status, path).toBe(404);
      expect(((await res.json()) as ErrorBody).error.code).toBe("webhook_not_found");
    }
    const created = (await (await admin("POST", base(organizationId), { url: "https://hooks.example.com" })).json()) as { id: string };
    const badLimit = await admin("GET", `${base(organizationId)}/${created.id}/deliveries?limit=0`);
    expect(badLimit.status).toBe(400);
    await admin("DELETE", `${base(organizationId)}/${created.id}`);
    expect((await admin("DELETE", `${base(organizationId)}/${created.id}`)).status).toBe(404);
    expect((await admin("POST", `${base(organizationId)}/${created.id}/rotate-secret`)).status).toBe(404);
  });
});

describe("webhook endpoints: errors when WEBHOOK_SECRET_KEYS is missing or malformed", () => {
  /** One admin request through the app with WEBHOOK_SECRET_KEYS as given (the rest of the bindings as configured). */
  const adminWithKeys = (keys: string | undefined, method: string, path: string, body?: unknown) =>
    app.fetch(
      new Request(new URL(path, "http://edge.test"), {
        method,
        headers: { authorization: `Bearer ${TEST_ADMIN_KEY}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
        body: body === undefined ? undefined : JSON.stringify(body),
      }),
      { ...env, WEBHOOK_SECRET_KEYS: keys } as Env,
      createExecutionContext(),
    );
  const endpointRows = (organizationId: string) =>
    env.DB.prepare("SELECT id, secret, updated_at FROM webhook_endpoints WHERE organization_id = ? ORDER BY id").bind(organizationId).all();

  it("create and rotate answer 500 with a code naming the missing secret, log it, and write nothing", async () => {
    const { organizationId } = await seedOrganization();
    const existing = (await (await admin("POST", base(organizationId), { url: "https://hooks.example.com/a" })).json()) as { id: string };
    const before = (await endpointRows(organizationId)).results;
    const logged = vi.spyOn(console, "error").mockImplementation(() => undefined);
    try {
      for (const [keys, code] of [
        [undefined, "webhook_secret_keys_missing"],
        ["", "webhook_secret_keys_missing"],
        [" , ", "webhook_secret_keys_missing"],
        ["k1:c2hvcnQ=", "webhook_secret_keys_invalid"],
        ["no-key-id", "webhook_secret_keys_invalid"],
      ] as const) {
        const create = await adminWithKeys(keys, "POST", base(organizationId), { url: "https://hooks.example.com/b" });
        const rotate = await adminWithKeys(keys, "POST", `${base(organizationId)}/${existing.id}/rotate-secret`);
        for (const res of [create, rotate]) {
          const error = ((await res.json()) as ErrorBody).error;
          expect([keys, res.status, error.code]).toEqual([keys, 500, code]);
          expect(error.message).toContain("WEBHOOK_SECRET_KEYS secret is");
          expect(error.message).toContain(code.endsWith("missing") ? "not set; the operator must set it" : "malformed");
          expect(error.message).toContain("nothing was written");
        }
        expect(logged.mock.calls.filter(([line]) => String(line).includes(`"code":"${code}"`)).length).toBeGreaterThanOrEqual(2);
      }
    } finally {
      logged.mockRestore();
    }
    // Nothing half-written: no new endpoint, the existing one's secret and timestamp as they were.
    expect((await endpointRows(organizationId)).results).toEqual(before);
    // The configured keys still work: the failure was the configuration's, not the data's.
    expect((await admin("POST", `${base(organizationId)}/${existing.id}/rotate-secret`)).status).toBe(200);
  });

  it("rotating an endpoint that does not exist is 404 webhook_not_found, whether or not WEBHOOK_SECRET_KEYS is usable", async () => {
    const { organizationId } = await seedOrganization();
    const other = await seedOrganization();
    const theirs = (await (await admin("POST", base(other.organizationId), { url: "https://hooks.example.com/t" })).json()) as {
      id: string;
    };
    for (const keys of [undefined, "no-key-id", env.WEBHOOK_SECRET_KEYS])
      for (const id of ["whk_doesnotexist00000000", theirs.id]) {
        const res = await adminWithKeys(keys, "POST", `${base(organizationId)}/${id}/rotate-secret`);
        expect([keys, id, res.status, ((await res.json()) as ErrorBody).error.code]).toEqual([keys, id, 404, "webhook_not_found"]);
      }
  });

  it("the OpenAPI document lists both codes under 500 for create and rotate", async () => {
    const doc = (await (await app.fetch(new Request("http://edge.test/openapi.json"), env, createExecutionContext())).json()) as {
      paths: Record<string, Record<string, { responses: Record<string, { description: string }> }>>;
    };
    for (const path of ["/admin/v1/organizations/{orgId}/webhooks", "/admin/v1/organizations/{orgId}/webhooks/{webhookId}/rotate-secret"]) {
      const described = doc.paths[path]!.post!.responses["500"]!.description;
      expect([path, described]).toEqual([path, expect.stringContaining("`webhook_secret_keys_missing`, `webhook_secret_keys_invalid`")]);
    }
  });
});

describe("webhook endpoints: security", () => {
  it("needs the admin key", async () => {
    const { organizationId, key } = await seedOrganization();
    expect((await admin("GET", base(organizationId), undefined, "wrong")).status).toBe(401);
    // A tenant's own API key is not an admin key.
    expect((await admin("POST", base(organizationId), { url: "https://a.example.com" }, key)).status).toBe(401);
  });

  it("one organization's endpoints are invisible and untouchable through another's path", async () => {
    const a = await seedOrganization();
    const b = await seedOrganization();
    const created = (await (await admin("POST", base(a.organizationId), { url: "https://a.example.com/h" })).json()) as { id: string };
    expect(((await (await admin("GET", base(b.organizationId))).json()) as { webhooks: unknown[] }).webhooks).toEqual([]);
    expect((await admin("DELETE", `${base(b.organizationId)}/${created.id}`)).status).toBe(404);
    expect((await admin("POST", `${base(b.organizationId)}/${created.id}/rotate-secret`)).status).toBe(404);
    expect((await admin("GET", `${base(b.organizationId)}/${created.id}/deliveries`)).status).toBe(404);
    expect(((await (await admin("GET", base(a.organizationId))).json()) as { webhooks: unknown[] }).webhooks).toHaveLength(1);
  });

  it("refuses private, loopback (other than the allowed 127.0.0.1), internal and non-https URLs", async () => {
    const { organizationId } = await seedOrganization();
    const refused = [
      "http://hooks.example.com/h",
      "ftp://hooks.example.com/h",
      "https://10.0.0.5/h",
      "https://192.168.1.1/h",
      "https://172.16.0.1/h",
      "https://169.254.169.254/latest/meta-data",
      "http://127.0.0.2:8080/h",
      "http://localhost:8080/h",
      "https://localhost/h",
      "https://db.internal/h",
      "https://printer.local/h",
      "https://intranet/h",
      "https://[::1]/h",
      "https://[fd00::1]/h",
      "https://[::ffff:10.0.0.1]/h",
      "https://0xa.0.0.1/h",
      "https://167772161/h",
      "https://user:pass@hooks.example.com/h",
      "https://hooks.example.com/h#frag",
      `https://hooks.example.com/${"a".repeat(2100)}`,
    ];
    for (const url of refused) {
      const res = await admin("POST", base(organizationId), { url });
      expect(res.status, url).toBe(400);
      expect(((await res.json()) as ErrorBody).error.code, url).toMatch(/webhook_url_not_allowed|invalid_request/);
    }
    // Edge tests allow http://127.0.0.1 (as npm run dev does).
    expect((await admin("POST", base(organizationId), { url: "http://127.0.0.1:9999/h" })).status).toBe(201);
  });

  it("the URL policy refuses http://127.0.0.1 unless the configuration allows it, and never other private addresses", () => {
    const prod = { allowLoopbackHttp: false };
    const dev = { allowLoopbackHttp: true };
    expect(webhookUrlProblem("http://127.0.0.1:8080/h", prod)).toMatch(/https/);
    expect(webhookUrlProblem("http://127.0.0.1:8080/h", dev)).toBeNull();
    expect(webhookUrlProblem("https://127.0.0.1/h", prod)).toMatch(/not public/);
    expect(webhookUrlProblem("http://10.0.0.1/h", dev)).toMatch(/https/);
    expect(webhookUrlProblem("https://10.0.0.1/h", dev)).toMatch(/not public/);
    expect(webhookUrlProblem("https://0x7f.0.0.1/h", prod)).toMatch(/loopback/);
    expect(webhookUrlProblem("https://2130706433/h", prod)).toMatch(/loopback/);
    expect(webhookUrlProblem("https://8.8.8.8/h", prod)).toBeNull();
    expect(webhookUrlProblem("https://[2606:4700::1111]/h", prod)).toBeNull();
    expect(webhookUrlProblem("https://hooks.example.com/h", prod)).toBeNull();
    expect(refusedRange("100.64.1.1")).toMatch(/carrier-grade/);
    expect(refusedRange("::ffff:127.0.0.1")).toMatch(/IPv4-mapped/);
    expect(refusedRange("fe80::1")).toMatch(/link-local/);
    expect(refusedRange("2001:db8::1")).toMatch(/documentation/);
    expect(refusedRange("3fff::1")).toBeNull();
    expect(refusedRange("4000::1")).toMatch(/outside 2000::\/3/);
    expect(refusedRange("1.1.1.1")).toBeNull();
  });
});
