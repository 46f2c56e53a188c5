/**
 * Idempotency-Key at the edge: the header's format, the claim (one run per key and organization,
 * 422 for another request, 409 while in flight, replay once accepted), and a refused start giving
 * the key back. Edge tests have no host; replays of real runs and 20 concurrent requests through
 * the real stack are in test/e2e/idempotency.test.ts.
 */
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { ApiError } from "../../src/errors.ts";
import { canonicalJson, parseIdempotencyKey, requestFingerprint } from "../../src/middleware/idempotency/index.ts";
import type { IdempotencyRequest } from "../../src/services/idempotency.ts";
import { claimIdempotencyKey } from "../../src/services/idempotency.ts";
import { call, errorCodeOf, postJson, seedCatalog, seedOrganization } from "./helpers.ts";
import { createRunningRun } from "./stream-helpers.ts";

const request = (key: string, fingerprint = "f1"): IdempotencyRequest => ({ key, fingerprint, replayed: false });
/** A start claiming a key: a fresh run UUID and its workflow id (or the given workflow id, as a caller may choose it). */
const fresh = (workflowId?: string) => {
  const runUuid = crypto.randomUUID();
  return { workflowId: workflowId ?? `hello-${runUuid}`, runUuid };
};
const codeOf = async (p: Promise<unknown>) => {
  try {
    await p;
    return null;
  } catch (err) {
    return err instanceof ApiError ? err.code : String(err);
  }
};

describe("Idempotency-Key: format", () => {
  beforeAll(async () => {
    await seedCatalog();
  });

  it("accepts 1-255 printable ASCII characters, bare or as a quoted string", () => {
    expect(parseIdempotencyKey(undefined)).toBeNull();
    expect(parseIdempotencyKey("abc-123")).toBe("abc-123");
    expect(parseIdempotencyKey('"8e03978e-40d5-43e8-bc93-6894a57f9324"')).toBe("8e03978e-40d5-43e8-bc93-6894a57f9324");
    expect(parseIdempotencyKey("k".repeat(255))).toHaveLength(255);
    expect(parseIdempotencyKey("with space ~!")).toBe("with space ~!");
    expect(parseIdempotencyKey('"a,b"')).toBe("a,b"); // a comma, quoted as the draft's string: one key
  });

  it("a quoted key is read as the draft's string (RFC 8941): an escaped backslash is one backslash, the same key as sent bare; any other escape is 400", () => {
    expect(parseIdempotencyKey("a\\b")).toBe("a\\b");
    expect(parseIdempotencyKey('"a\\\\b"')).toBe("a\\b");
    for (const bad of ['"a\\b"', '"a\\"', '"a\\\\\\"', '"a\\"b"']) {
      expect(() => parseIdempotencyKey(bad), bad).toThrowError(/Idempotency-Key/);
    }
  });

  it("two Idempotency-Key headers (joined by Fetch as `k1, k2`) are 400 invalid_idempotency_key, not one key named `k1, k2`; nothing starts or is claimed", async () => {
    const { key, organizationId } = await seedOrganization();
    const runs = () => env.DB.prepare("SELECT COUNT(*) AS n FROM runs WHERE organization_id = ?").bind(organizationId).first("n");
    const before = await runs();
    const headers = new Headers({ authorization: `Bearer ${key}`, "content-type": "application/json" });
    headers.append("idempotency-key", "k1");
    headers.append("idempotency-key", "k2");
    const res = await call("/workflow/start", {
      method: "POST",
      headers,
      body: JSON.stringify({ workflowName: "hello", input: { name: "Ada" } }),
    });
    expect(res.status).toBe(400);
    expect(errorCodeOf(await res.json())).toBe("invalid_idempotency_key");
    expect(await runs()).toBe(before);
    expect(
      await env.DB.prepare("SELECT COUNT(*) AS n FROM idempotency_keys WHERE organization_id = ?").bind(organizationId).first("n"),
    ).toBe(0);
  });

  it("answers 400 invalid_idempotency_key on every start route for a bad key, before anything starts", async () => {
    const { key, organizationId } = await seedOrganization();
    // A vertical tab, form feed or no-break space at either end is not printable ASCII either (String.trim dropped them: key "k").
    const bad = ["", "k".repeat(256), "caf\u00e9", "tab\there", '""', 'a"b', "k\u000b", "\u000ck", "k\u00a0", '"k"\u000b'];
    const routes: Array<[string, unknown]> = [
      ["/workflow/start", { workflowName: "hello", input: { name: "Ada" } }],
      ["/workflow/run", { workflowName: "hello", input: { name: "Ada" } }],
      ["/api/v1/run/wf_missing", {}],
      ["/api/v1/run/wf_missing/stream", {}],
    ];
    for (const [path, body] of routes) {
      for (const value of bad) {
        const res = await call(path, {
          method: "POST",
          headers: { authorization: `Bearer ${key}`, "content-type": "application/json", "idempotency-key": value },
          body: JSON.stringify(body),
        });
        expect(res.status, `${path} ${JSON.stringify(value)}`).toBe(400);
        expect(errorCodeOf(await res.json())).toBe("invalid_idempotency_key");
      }
    }
    const execute = await call("/api/v1/workflow-runs/execute", {
      method: "POST",
      headers: {
        authorization: "Bearer edge-test-internal-secret-of-32-characters",
        "x-organization-id": organizationId,
        "content-type": "application/json",
        "idempotency-key": "k".repeat(300),
      },
      body: JSON.stringify({ workflowId: "x", inputs: {} }),
    });
    expect(execute.status).toBe(400);
    expect(errorCodeOf(await execute.json())).toBe("invalid_idempotency_key");
    expect(
      await env.DB.prepare("SELECT COUNT(*) AS n FROM idempotency_keys WHERE organization_id = ?").bind(organizationId).first("n"),
    ).toBe(0);
  });

  it("fingerprints the route and the body's content, not its spelling", async () => {
    const req = (path: string, body: string, type = "application/json") =>
      new Request(`http://edge.test${path}`, { method: "POST", headers: { "content-type": type }, body });
    const a = await requestFingerprint(req("/workflow/start", '{"workflowName":"hello","input":{"name":"Ada"}}'));
    expect(await requestFingerprint(req("/workflow/start", '{ "input": {"name": "Ada"}, "workflowName": "hello" }'))).toBe(a);
    expect(await requestFingerprint(req("/workflow/run", '{"workflowName":"hello","input":{"name":"Ada"}}'))).not.toBe(a);
    expect(await requestFingerprint(req("/workflow/start", '{"workflowName":"hello","input":{"name":"Bob"}}'))).not.toBe(a);
    // The path as the router matches it: an escaped letter is the same route, an escaped slash is not.
    const published = await requestFingerprint(req("/api/v1/run/hello", "{}"));
    expect(await requestFingerprint(req("/api/v1/run/%68ell%6F", "{}"))).toBe(published);
    expect(await requestFingerprint(req("/api/v1/run/hel%2Flo", "{}"))).not.toBe(await requestFingerprint(req("/api/v1/run/hel/lo", "{}")));
    const form = (boundary: string) =>
      req(
        "/api/v1/workflow-runs/execute",
        `--${boundary}\r\nContent-Disposition: form-data; name="workflowId"\r\n\r\nw1\r\n--${boundary}--\r\n`,
        `multipart/form-data; boundary=${boundary}`,
      );
    expect(await requestFingerprint(form("aaa"))).toBe(await requestFingerprint(form("bbb")));
    // A form whose text is not UTF-8 is fingerprinted by its bytes: the route gives its own answer
    // (415 on a JSON route, 400 invalid_encoding on execute), the same with a key as without one.
    const notUtf8 = req("/workflow/start", "workflowName=%FF", "application/x-www-form-urlencoded");
    await expect(requestFingerprint(notUtf8)).resolves.toMatch(/^[0-9a-f]{64}$/);
    expect(canonicalJson({ b: 1, a: [1, { d: 2, c: 3 }] })).toBe('{"a":[1,{"c":3,"d":2}],"b":1}');
  });
});

describe("Idempotency-Key: hostile bodies", () => {
  const nested = (depth: number) => `${"[".repeat(depth)}${"]".repeat(depth)}`;

  it("a body nested too deep is 400 json_too_deep with a key as without one, and claims nothing", async () => {
    // The fingerprint is taken before the route reads the body, so before its depth check:
    // canonicalJson overflows the stack at 100,000 levels, which must never escape as a 500.
    const { key, organizationId } = await seedOrganization();
    const deep = nested(100_000);
    const routes: Array<[string, string, Record<string, string>]> = [
      ["/workflow/start", `{"workflowName":"hello","input":{"name":"x","deep":${deep}}}`, { authorization: `Bearer ${key}` }],
      ["/workflow/run", `{"workflowName":"hello","input":{"name":"x","deep":${deep}}}`, { authorization: `Bearer ${key}` }],
      ["/api/v1/run/wf_missing", `{"audience":${deep},"topic":"t"}`, { authorization: `Bearer ${key}` }],
      ["/api/v1/run/wf_missing/stream", `{"audience":${deep},"topic":"t"}`, { authorization: `Bearer ${key}` }],
      [
        "/api/v1/workflow-runs/execute",
        `{"workflowId":"x","inputs":${deep}}`,
        { authorization: "Bearer edge-test-internal-secret-of-32-characters", "x-organization-id": organizationId },
      ],
    ];
    for (const [path, body, headers] of routes) {
      const res = await call(path, {
        method: "POST",
        headers: { ...headers, "content-type": "application/json", "idempotency-key": `deep-${path}` },
        body,
      });
      expect(res.status, path).toBe(400);
      expect(errorCodeOf(await res.json()), path).toBe("json_too_deep");
    }
    expect(
      await env.DB.prepare("SELECT COUNT(*) AS n FROM idempotency_keys WHERE organization_id = ?").bind(organizationId).first("n"),
    ).toBe(0);
  });

  it("fingerprints a body nested too deep by its bytes, without parsing it", async () => {
    const req = (body: string) =>
      new Request("http://edge.test/workflow/start", { method: "POST", headers: { "content-type": "application/json" }, body });
    const deep = await requestFingerprint(req(`{"a":${nested(500_000)}}`));
    expect(deep).toMatch(/^[0-9a-f]{64}$/);
    expect(await requestFingerprint(req(`{"a":${nested(500_000)}}`))).toBe(deep);
    expect(await requestFingerprint(req(`{"a":${nested(100_001)}}`))).not.toBe(deep);
    // Within the limit, the body is still canonicalized.
    expect(await requestFingerprint(req(`{"b":1, "a":${nested(60)}}`))).toBe(await requestFingerprint(req(`{"a":${nested(60)},"b":1}`)));
  });
});

describe("Idempotency-Key: OpenAPI", () => {
  it("documents the header, Idempotent-Replayed and the three codes on every start route, and the webhook routes", async () => {
    const doc = (await (await call("/openapi.json")).json()) as { paths: Record<string, Record<string, any>> };
    const starts = [
      "/workflow/start",
      "/workflow/run",
      "/api/v1/run/{workflowId}",
      "/api/v1/run/{workflowId}/stream",
      "/api/v1/workflow-runs/execute",
      "/api/v1/workflow-runs/execute/stream",
    ];
    for (const path of starts) {
      const op = doc.paths[path]?.post;
      expect(op, path).toBeDefined();
      expect(
        op.parameters.some((p: { in: string; name: string }) => p.in === "header" && p.name === "idempotency-key"),
        path,
      ).toBe(true);
      const text = JSON.stringify(op.responses);
      for (const code of ["invalid_idempotency_key", "idempotency_key_in_use", "idempotency_key_reused"])
        expect(text, `${path} ${code}`).toContain(code);
      expect(op.responses["200"].headers["Idempotent-Replayed"], path).toBeDefined();
    }
    expect(doc.paths["/workflow/{id}/status"]?.get.parameters?.some((p: { name: string }) => p.name === "idempotency-key") ?? false).toBe(
      false,
    );
    const hooks = "/admin/v1/organizations/{orgId}/webhooks";
    expect(Object.keys(doc.paths[hooks] ?? {}).sort()).toEqual(["get", "post"]);
    expect(doc.paths[`${hooks}/{webhookId}`]?.delete).toBeDefined();
    expect(doc.paths[`${hooks}/{webhookId}/rotate-secret`]?.post).toBeDefined();
    expect(doc.paths[`${hooks}/{webhookId}/deliveries`]?.get).toBeDefined();
  });
});

/** A running run whose start claimed a fresh key (the claim finds no earlier holder). */
async function runHoldingAKey() {
  const { organizationId } = await seedOrganization();
  const { workflowId, runId } = await createRunningRun(organizationId);
  const key = `key-${crypto.randomUUID()}`;
  expect(
    await claimIdempotencyKey(env.DB, organizationId, request(key), { workflowId, runUuid: workflowId.replace("two_steps-", "") }),
  ).toBeNull();
  return { organizationId, workflowId, runId, key };
}

describe("Idempotency-Key: the claim", () => {
  it("one holder per organization and key; same request replays once started, in flight is 409, another request is 422", async () => {
    const { organizationId, workflowId, runId, key } = await runHoldingAKey();
    // Same request, another attempt (its own fresh workflowId): the first run, marked replayed.
    const again = request(key);
    expect(await claimIdempotencyKey(env.DB, organizationId, again, fresh())).toMatchObject({ workflowId, runId, status: "running" });
    expect(again.replayed).toBe(true);
    // Another body (or route) under the same key.
    expect(await codeOf(claimIdempotencyKey(env.DB, organizationId, request(key, "f2"), fresh()))).toBe("idempotency_key_reused");
    // The same key in another organization is another key.
    const other = await seedOrganization();
    expect(await claimIdempotencyKey(env.DB, other.organizationId, request(key, "f2"), fresh())).toBeNull();
  });

  it("with a caller-chosen workflowId, a retry of the same start replays it (the holder is the run UUID, not the id)", async () => {
    const { organizationId, workflowId, runId, key } = await runHoldingAKey();
    // The retry names the same workflowId (the caller chose it) but is another start (another UUID).
    const retry = request(key);
    expect(await claimIdempotencyKey(env.DB, organizationId, retry, fresh(workflowId))).toMatchObject({ workflowId, runId });
    expect(retry.replayed).toBe(true);
  });

  it("a key whose run is still starting is 409 idempotency_key_in_use with Retry-After", async () => {
    const { organizationId } = await seedOrganization();
    const key = `key-${crypto.randomUUID()}`;
    expect(await claimIdempotencyKey(env.DB, organizationId, request(key), fresh())).toBeNull();
    try {
      await claimIdempotencyKey(env.DB, organizationId, request(key), fresh());
      expect.unreachable();
    } catch (err) {
      expect((err as ApiError).code).toBe("idempotency_key_in_use");
      expect((err as ApiError).headers).toEqual({ "retry-after": "1" });
    }
  });

  it("of 20 concurrent claims of one key exactly one wins", async () => {
    const { organizationId } = await seedOrganization();
    const key = `key-${crypto.randomUUID()}`;
    const outcomes = await Promise.all(
      Array.from({ length: 20 }, () =>
        claimIdempotencyKey(env.DB, organizationId, request(key), fresh()).then(
          () => "won",
          (e: ApiError) => e.code,
        ),
      ),
    );
    expect(outcomes.filter((o) => o === "won")).toHaveLength(1);
    expect(outcomes.filter((o) => o !== "won").every((o) => o === "idempotency_key_in_use")).toBe(true);
  });

  it("an expired key is free again; an abandoned claim (no run row after a minute) is taken over", async () => {
    const { organizationId } = await seedOrganization();
    const key = `key-${crypto.randomUUID()}`;
    await env.DB.prepare(
      "INSERT INTO idempotency_keys (organization_id, key, fingerprint, workflow_id, run_uuid, expires_at) VALUES (?, ?, 'old', 'hello-old', 'old-uuid', ?)",
    )
      .bind(organizationId, key, Date.now() - 1)
      .run();
    expect(await claimIdempotencyKey(env.DB, organizationId, request(key, "new"), fresh())).toBeNull();
    const abandoned = `key-${crypto.randomUUID()}`;
    await env.DB.prepare(
      "INSERT INTO idempotency_keys (organization_id, key, fingerprint, workflow_id, run_uuid, expires_at, created_at) VALUES (?, ?, 'f1', 'hello-dead', 'dead-uuid', ?, '2020-01-01T00:00:00.000Z')",
    )
      .bind(organizationId, abandoned, Date.now() + 3_600_000)
      .run();
    expect(await claimIdempotencyKey(env.DB, organizationId, request(abandoned), fresh())).toBeNull();
  });

  it("20 concurrent POST /workflow/start with one key through the Worker and the DOs accept exactly one run", async () => {
    const { organizationId, key } = await seedOrganization();
    const idem = `key-${crypto.randomUUID()}`;
    const body = { workflowName: "hello", input: { name: "Ada" } };
    const responses = await Promise.all(
      Array.from({ length: 20 }, () => postJson("/workflow/start", body, key, { "idempotency-key": idem })),
    );
    const outcomes = await Promise.all(
      responses.map(async (r) => ({
        status: r.status,
        replayed: r.headers.get("idempotent-replayed"),
        body: (await r.json()) as Record<string, any>,
      })),
    );
    const ok = outcomes.filter((o) => o.status === 200);
    expect(ok.filter((o) => o.replayed === null)).toHaveLength(1);
    expect(new Set(ok.map((o) => o.body.workflowId)).size).toBe(1);
    for (const o of outcomes.filter((o) => o.status !== 200)) {
      expect(o.status).toBe(409);
      expect(errorCodeOf(o.body)).toBe("idempotency_key_in_use");
    }
    expect(await env.DB.prepare("SELECT COUNT(*) AS n FROM runs WHERE organization_id = ?").bind(organizationId).first("n")).toBe(1);
    // Afterwards every retry is a replay of that run.
    const later = await postJson("/workflow/start", body, key, { "idempotency-key": idem });
    expect(later.status).toBe(200);
    expect(later.headers.get("idempotent-replayed")).toBe("true");
    expect(((await later.json()) as { workflowId: string }).workflowId).toBe(ok[0]!.body.workflowId);
  });

  it("a start refused before acceptance (402) gives the key back, so a retry is a fresh attempt", async () => {
    const { organizationId, key } = await seedOrganization();
    await env.DB.prepare("UPDATE organizations SET credit_balance = 0 WHERE id = ?").bind(organizationId).run();
    const idem = `key-${crypto.randomUUID()}`;
    for (let i = 0; i < 2; i++) {
      const res = await postJson("/workflow/start", { workflowName: "hello", input: { name: "Ada" } }, key, { "idempotency-key": idem });
      expect(res.status).toBe(402);
      expect(errorCodeOf(await res.json())).toBe("insufficient_credits");
    }
    expect(
      await env.DB.prepare("SELECT COUNT(*) AS n FROM idempotency_keys WHERE organization_id = ?").bind(organizationId).first("n"),
    ).toBe(0);
    expect(await env.DB.prepare("SELECT COUNT(*) AS n FROM runs WHERE organization_id = ?").bind(organizationId).first("n")).toBe(0);
  });

  it("a start accepted while the host is down (runId null) is replayed as it was answered, through the start route", async () => {
    const { organizationId, key } = await seedOrganization();
    const idem = `key-${crypto.randomUUID()}`;
    const body = { workflowName: "hello", input: { name: "Ada" } };
    const first = await postJson("/workflow/start", body, key, { "idempotency-key": idem });
    expect(first.status).toBe(200);
    expect(first.headers.get("idempotent-replayed")).toBeNull();
    const started = (await first.json()) as { workflowId: string; runId: string | null };
    expect(started.runId).toBeNull();
    const again = await postJson("/workflow/start", body, key, { "idempotency-key": `"${idem}"` });
    expect(again.status).toBe(200);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect(await again.json()).toMatchObject({ workflowId: started.workflowId, runId: null });
    const reused = await postJson("/workflow/start", { ...body, input: { name: "Bob" } }, key, { "idempotency-key": idem });
    expect(reused.status).toBe(422);
    expect(errorCodeOf(await reused.json())).toBe("idempotency_key_reused");
    expect(await env.DB.prepare("SELECT COUNT(*) AS n FROM runs WHERE organization_id = ?").bind(organizationId).first("n")).toBe(1);
  });
});
