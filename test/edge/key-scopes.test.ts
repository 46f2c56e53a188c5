/**
 * API key scopes (middleware/key-scope): what the admin API stores, and what each API-key route lets
 * a key without its scope do (nothing: 403 before the body or the run is read). The security walk
 * covers every API-key route the OpenAPI document lists, so a route added without a scope fails here.
 */
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { EVERY_SCOPE, KEY_SCOPES, type KeyScope } from "../../src/middleware/key-scope/index.ts";
import { admin, call, type ErrorBody, type OutputErrorBody, seedCatalog, seedOrganization } from "./helpers.ts";
import { errorCodeOf } from "../support/error-bodies.ts";
import { createRunningRun } from "./stream-helpers.ts";

type Operation = { security?: Array<Record<string, string[]>> };

async function createKey(organizationId: string, body: Record<string, unknown>) {
  return admin("POST", `/admin/v1/organizations/${organizationId}/api-keys`, { name: "scoped", ...body });
}

async function keyWith(organizationId: string, scopes: string[]): Promise<string> {
  const res = await createKey(organizationId, { scopes });
  expect(res.status).toBe(201);
  return ((await res.json()) as { key: string }).key;
}

const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

/** The API-key operations of the OpenAPI document, with the scope each names. */
async function scopedOperations(): Promise<Array<{ method: string; path: string; scope: string | undefined }>> {
  const doc = (await (await call("/openapi.json")).json()) as { paths: Record<string, Record<string, Operation>> };
  return Object.entries(doc.paths).flatMap(([path, ops]) =>
    Object.entries(ops)
      .filter(([, op]) => op.security?.some((entry) => "apiKey" in entry))
      .map(([method, op]) => ({ method: method.toUpperCase(), path, scope: op.security!.find((entry) => "apiKey" in entry)!.apiKey![0] })),
  );
}

describe("API key scopes", () => {
  let org: Awaited<ReturnType<typeof seedOrganization>>;
  let run: { workflowId: string; runId: string };
  beforeAll(async () => {
    await seedCatalog();
    org = await seedOrganization();
    run = await createRunningRun(org.organizationId);
  });

  describe("happy path", () => {
    it("stores the scopes a key is created with, each once, and lists them; * by default", async () => {
      const created = await createKey(org.organizationId, { scopes: ["runs:control", "runs:read", "runs:read"] });
      expect(created.status).toBe(201);
      const body = (await created.json()) as { id: string; scopes: string[] };
      expect(body.scopes).toEqual(["runs:read", "runs:control"]);
      const plain = (await (await createKey(org.organizationId, {})).json()) as { scopes: string[] };
      expect(plain.scopes).toEqual([EVERY_SCOPE]);
      // `*` holds every scope: asking for it with others stores it alone.
      const all = (await (await createKey(org.organizationId, { scopes: ["runs:start", "*"] })).json()) as { scopes: string[] };
      expect(all.scopes).toEqual([EVERY_SCOPE]);
      const list = (await (await admin("GET", `/admin/v1/organizations/${org.organizationId}/api-keys?limit=100`)).json()) as {
        apiKeys: Array<{ id: string; scopes: string[] }>;
      };
      expect(list.apiKeys.find((k) => k.id === body.id)?.scopes).toEqual(["runs:read", "runs:control"]);
    });

    it("lets a read-only key read a run and mint its stream token, and the token read its history stream", async () => {
      const key = await keyWith(org.organizationId, ["runs:read"]);
      const status = await call(`/workflow/${run.workflowId}/status`, { headers: bearer(key) });
      expect(status.status).toBe(200);
      const head = await call(`/workflow/${run.workflowId}/status`, { method: "HEAD", headers: bearer(key) });
      expect(head.status).toBe(200);
      const minted = await call(`/workflow/${run.workflowId}/stream-token`, { method: "POST", headers: bearer(key) });
      expect(minted.status).toBe(200);
      const { token } = (await minted.json()) as { token: string };
      const controller = new AbortController();
      const stream = await call(`/workflow/${run.workflowId}/history/stream?token=${token}`, { signal: controller.signal });
      expect(stream.status).toBe(200);
      controller.abort();
      await stream.body?.cancel().catch(() => {});
    });

    it("leaves keys created before scopes existed (the column's default) with every scope", async () => {
      const row = await env.DB.prepare("SELECT scopes FROM api_keys WHERE id = ?").bind(org.keyId).first<{ scopes: string }>();
      expect(JSON.parse(row!.scopes)).toEqual([EVERY_SCOPE]);
      const res = await call(`/workflow/${run.workflowId}/terminate`, {
        method: "POST",
        headers: { ...bearer(org.key), "content-type": "application/json" },
        body: "{",
      });
      // Past the scope check: the body is what is wrong.
      expect(res.status).toBe(400);
    });
  });

  describe("errors", () => {
    it.each([
      ["an empty list", []],
      ["an unknown scope", ["runs:delete"]],
      ["a name such as __proto__", ["__proto__"]],
      ["a string instead of a list", "runs:read"],
      ["a scope in another case", ["RUNS:READ"]],
    ])("refuses %s with 400 invalid_request naming `scopes`, and creates no key", async (_what, scopes) => {
      const before = await env.DB.prepare("SELECT COUNT(*) AS n FROM api_keys WHERE organization_id = ?")
        .bind(org.organizationId)
        .first<{ n: number }>();
      const res = await createKey(org.organizationId, { scopes });
      expect(res.status).toBe(400);
      const body = (await res.json()) as ErrorBody;
      expect(body.error.code).toBe("invalid_request");
      expect(JSON.stringify(body.error.issues)).toContain("scopes");
      const after = await env.DB.prepare("SELECT COUNT(*) AS n FROM api_keys WHERE organization_id = ?")
        .bind(org.organizationId)
        .first<{ n: number }>();
      expect(after!.n).toBe(before!.n);
    });

    it("answers a route no handler serves with 404, whatever the key's scopes", async () => {
      const key = await keyWith(org.organizationId, ["runs:read"]);
      const res = await call("/workflow/no/such/route/here", { method: "POST", headers: bearer(key) });
      expect(res.status).toBe(404);
    });
  });

  describe("security", () => {
    it("names a scope for every API-key route but /heartbeat, from the scopes a key can hold", async () => {
      const ops = await scopedOperations();
      expect(ops.length).toBeGreaterThan(30);
      const unscoped = ops.filter((op) => !op.scope).map((op) => `${op.method} ${op.path}`);
      expect(unscoped).toEqual(["POST /heartbeat"]);
      for (const op of ops) if (op.scope) expect(KEY_SCOPES).toContain(op.scope);
    });

    it("puts each kind of route in the scope that says what it does (reads, starts, control)", async () => {
      const scopeOf = new Map((await scopedOperations()).map((op) => [`${op.method} ${op.path}`, op.scope]));
      const expected: Record<string, string> = {
        "GET /workflow/catalog": "runs:read",
        "GET /workflow/{id}/runs/{rid}/result": "runs:read",
        "GET /workflow/{id}/history/stream": "runs:read",
        "POST /workflow/{id}/query/{name}": "runs:read",
        "POST /workflow/{id}/stream-token": "runs:read",
        "POST /workflow/run": "runs:start",
        "POST /api/v1/run/{workflowId}/stream": "runs:start",
        "PATCH /workflow/{id}/stop": "runs:control",
        "POST /workflow/{id}/runs/{rid}/terminate": "runs:control",
        "POST /workflow/{id}/reset": "runs:control",
        "POST /workflow/{id}/signal/{name}": "runs:control",
        "POST /workflow/{id}/update/{name}": "runs:control",
        "POST /workflow/{id}/feedback": "runs:control",
      };
      expect(Object.fromEntries(Object.keys(expected).map((route) => [route, scopeOf.get(route)]))).toEqual(expected);
    });

    it("refuses every API-key route to a key without its scope (403 + challenge) and lets one with just that scope past", async () => {
      const keys = Object.fromEntries(
        await Promise.all(KEY_SCOPES.map(async (scope) => [scope, await keyWith(org.organizationId, [scope])] as const)),
      ) as Record<KeyScope, string>;
      const concrete = (path: string) =>
        path.replace("{workflowId}", "hello").replace("{id}", run.workflowId).replace("{rid}", run.runId).replace("{name}", "anything");
      const ops = (await scopedOperations()).filter((op) => op.scope);
      const refusedWrongly: string[] = [];
      const passedWrongly: string[] = [];
      for (const op of ops) {
        for (const scope of KEY_SCOPES) {
          // A body that is no JSON: past the scope check, a route that reads one answers 400.
          const res = await call(concrete(op.path), {
            method: op.method,
            headers: { ...bearer(keys[scope]), "content-type": "application/json" },
            ...(op.method === "GET" ? {} : { body: "{" }),
          });
          // Read only refusals: a history stream let past stays open.
          const body = res.status === 403 ? await res.text() : "";
          if (res.status !== 403) await res.body?.cancel();
          const code = res.status === 403 ? errorCodeOf(JSON.parse(body)) : undefined;
          if (scope === op.scope && res.status === 403) refusedWrongly.push(`${op.method} ${op.path} with ${scope}: ${body}`);
          if (scope !== op.scope) {
            if (res.status !== 403 || code !== "insufficient_scope")
              passedWrongly.push(`${op.method} ${op.path} with ${scope}: ${res.status}`);
            else
              expect(res.headers.get("www-authenticate")).toBe(`Bearer realm="outrider", error="insufficient_scope", scope="${op.scope}"`);
          }
        }
      }
      expect(refusedWrongly).toEqual([]);
      expect(passedWrongly).toEqual([]);
    });

    it("refuses a start before its body is read or a run is written, in Output's envelope", async () => {
      const key = await keyWith(org.organizationId, ["runs:read", "runs:control"]);
      const count = () =>
        env.DB.prepare("SELECT COUNT(*) AS n FROM runs WHERE organization_id = ?").bind(org.organizationId).first<{ n: number }>();
      const before = await count();
      const res = await call("/workflow/start", {
        method: "POST",
        headers: { ...bearer(key), "content-type": "application/json" },
        body: JSON.stringify({ workflowName: "hello", input: { name: "Ada" } }),
      });
      expect(res.status).toBe(403);
      const body = (await res.json()) as OutputErrorBody;
      expect(body).toMatchObject({ error: "InsufficientScopeError", code: "insufficient_scope" });
      expect(body.message).toContain("runs:start");
      expect((await count())!.n).toBe(before!.n);
      // The published run API answers in its own envelope.
      const published = await call("/api/v1/run/hello", {
        method: "POST",
        headers: { ...bearer(key), "content-type": "application/json" },
        body: "{}",
      });
      expect(published.status).toBe(403);
      expect(((await published.json()) as ErrorBody).error.code).toBe("insufficient_scope");
    });

    it("keeps a stream token to the history streams: a token never reaches a route it was not made for", async () => {
      const key = await keyWith(org.organizationId, ["runs:read"]);
      const { token } = (await (
        await call(`/workflow/${run.workflowId}/stream-token`, { method: "POST", headers: bearer(key) })
      ).json()) as { token: string };
      const res = await call(`/workflow/${run.workflowId}/status?token=${token}`);
      expect(res.status).toBe(401);
    });
  });
});
