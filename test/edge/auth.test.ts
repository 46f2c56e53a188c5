import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { clearOrganizationStatusCache } from "../../src/lib/organization-status.ts";
import { clearApiKeyCache } from "../../src/middleware/api-key-auth/index.ts";
import { interceptD1InPlace } from "../support/d1-intercept.ts";
import { createKey, type ErrorBody, type OutputErrorBody, postJson, seedCatalog, seedOrganization } from "./helpers.ts";

// A request that passes auth then names a workflow the catalog lacks (424) proves the key was
// accepted without needing the host.
const UNKNOWN_WORKFLOW = { workflowName: "no_such_workflow", input: {} };

describe("API key authentication", () => {
  let org: Awaited<ReturnType<typeof seedOrganization>>;
  beforeAll(async () => {
    org = await seedOrganization();
    await seedCatalog();
  });

  it("refuses a request without credentials with 401 and the JSON error shape", async () => {
    const res = await postJson("/workflow/start", UNKNOWN_WORKFLOW);
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toContain("Bearer");
    // The Workflow API answers in Output's envelope: `error` is a string Output clients can print.
    const body = (await res.json()) as OutputErrorBody;
    expect(body.error).toBe("UnauthorizedError");
    expect(body.code).toBe("unauthorized");
    expect(body.requestId).toBeTruthy();
    // The other families keep their own envelope.
    const admin = await postJson("/api/v1/workflow-runs/execute", {});
    expect(admin.status).toBe(401);
    expect(((await admin.json()) as ErrorBody).error.code).toBe("unauthorized");
  });

  it("accepts a valid Bearer key", async () => {
    const res = await postJson("/workflow/start", UNKNOWN_WORKFLOW, org.key);
    expect(res.status).toBe(424);
    expect(((await res.json()) as OutputErrorBody).code).toBe("unsupported_workflow");
  });

  it("refuses a key with the right id and a wrong secret", async () => {
    const wrong = org.key.slice(0, -4) + (org.key.endsWith("AAAA") ? "BBBB" : "AAAA");
    const res = await postJson("/workflow/start", UNKNOWN_WORKFLOW, wrong);
    expect(res.status).toBe(401);
  });

  it("refuses the right id and secret under another prefix: a key is `otr_<id>_<secret>` as issued, which secret scanners look for", async () => {
    const [, id, secret] = /^otr_([a-z0-9]+)_([A-Za-z0-9]+)$/.exec(org.key)!;
    for (const prefix of ["xyz", "ot", "otrr"]) {
      const res = await postJson("/workflow/start", UNKNOWN_WORKFLOW, `${prefix}_${id}_${secret}`);
      expect(res.status, prefix).toBe(401);
    }
    expect((await postJson("/workflow/start", UNKNOWN_WORKFLOW, `otr_${id}_${secret}`)).status).toBe(424);
  });

  it("refuses an unknown key id and a malformed key", async () => {
    expect((await postJson("/workflow/start", UNKNOWN_WORKFLOW, "otr_unknownid1_abcdefghijklmnopqrstuvwxyz0123")).status).toBe(401);
    expect((await postJson("/workflow/start", UNKNOWN_WORKFLOW, "not-a-key")).status).toBe(401);
  });

  it("accepts Basic with the raw key and with base64 user:key, as Output clients send", async () => {
    const raw = await postJson("/workflow/start", UNKNOWN_WORKFLOW, undefined, { authorization: `Basic ${org.key}` });
    expect(raw.status).toBe(424);
    const encoded = await postJson("/workflow/start", UNKNOWN_WORKFLOW, undefined, { authorization: `Basic ${btoa(`user:${org.key}`)}` });
    expect(encoded.status).toBe(424);
  });

  it("refuses an unsupported scheme", async () => {
    const res = await postJson("/workflow/start", UNKNOWN_WORKFLOW, undefined, { authorization: `Token ${org.key}` });
    expect(res.status).toBe(401);
  });

  it("refuses a revoked key once the isolate cache has expired", async () => {
    const { key, keyId } = await createKey(org.organizationId);
    expect((await postJson("/workflow/start", UNKNOWN_WORKFLOW, key)).status).toBe(424);
    await env.DB.prepare("UPDATE api_keys SET revoked_at = ? WHERE id = ?").bind(new Date().toISOString(), keyId).run();
    clearApiKeyCache(); // stands for the cache TTL passing
    expect((await postJson("/workflow/start", UNKNOWN_WORKFLOW, key)).status).toBe(401);
  });

  it("a key the isolate has not cached costs one D1 read, its organization's status included (a second read would be a second round trip to the home region)", async () => {
    clearApiKeyCache();
    clearOrganizationStatusCache();
    const reads: string[] = [];
    const restore = interceptD1InPlace(env.DB, (call) => {
      if (call.kind === "statement" && /api_keys|suspended_at/.test(call.sql)) reads.push(call.sql);
    });
    try {
      expect((await postJson("/workflow/start", UNKNOWN_WORKFLOW, org.key)).status).toBe(424);
      expect(reads).toHaveLength(1);
      // Cached from then on, the key and its organization's status alike.
      expect((await postJson("/workflow/start", UNKNOWN_WORKFLOW, org.key)).status).toBe(424);
      expect(reads).toHaveLength(1);
    } finally {
      restore();
    }
  });

  it("reads D1 once per isolate and cache period for a key it refused, however often it is retried", async () => {
    const { key, keyId } = await createKey(org.organizationId);
    await env.DB.prepare("UPDATE api_keys SET revoked_at = ? WHERE id = ?").bind(new Date().toISOString(), keyId).run();
    clearApiKeyCache();
    const unknown = `otr_${"z".repeat(12)}_${"A".repeat(32)}`;
    let keyReads = 0;
    const restore = interceptD1InPlace(env.DB, (call) => {
      if (call.kind === "statement" && /api_keys/.test(call.sql)) keyReads++;
    });
    try {
      for (const credential of [key, unknown]) {
        keyReads = 0;
        for (let i = 0; i < 5; i++) {
          const res = await postJson("/workflow/start", UNKNOWN_WORKFLOW, credential);
          expect(res.status).toBe(401);
          expect(res.headers.get("www-authenticate")).toContain('error="invalid_token"');
        }
        expect(keyReads, credential).toBe(1);
      }
    } finally {
      restore();
    }
    // A live key is not held back by the refused ones.
    expect((await postJson("/workflow/start", UNKNOWN_WORKFLOW, org.key)).status).toBe(424);
  });

  it("security: made-up key ids from one address cost at most the limit's D1 reads a minute; past it 429, while cached keys still work", async () => {
    clearApiKeyCache();
    // The binding counts in windows aligned to the wall clock's minutes: the flood stays in one.
    const intoMinute = Date.now() % 60_000;
    if (intoMinute > 45_000) await new Promise((r) => setTimeout(r, 60_500 - intoMinute));
    const address = `203.0.113.${Math.floor(Math.random() * 250) + 1}`;
    const from = (credential: string, ip = address) =>
      postJson("/workflow/start", UNKNOWN_WORKFLOW, credential, { "cf-connecting-ip": ip });
    // A key of the organization, cached before the flood.
    expect((await from(org.key)).status).toBe(424);
    const madeUp = () => `otr_${crypto.randomUUID().replaceAll("-", "").slice(0, 20)}_${"A".repeat(32)}`;
    let keyReads = 0;
    const restore = interceptD1InPlace(env.DB, (call) => {
      if (call.kind === "statement" && /api_keys/.test(call.sql)) keyReads++;
    });
    const statuses = new Map<number, number>();
    try {
      for (let i = 0; i < 200; i++) {
        const res = await from(madeUp());
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        if (res.status === 429) expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
      }
      // wrangler.toml: UNKNOWN_API_KEY_LOOKUPS allows 120 a minute (one more to learn it is over).
      expect(keyReads).toBeLessThanOrEqual(121);
      expect(statuses.get(401)).toBeLessThanOrEqual(121);
      expect(statuses.get(429)).toBeGreaterThanOrEqual(79);
      // The organization's cached key still works from that address; another address is not held back.
      expect((await from(org.key)).status).toBe(424);
      expect((await from(madeUp(), "198.51.100.7")).status).toBe(401);
    } finally {
      restore();
    }
  }, 30_000);

  it("security: an IPv6 client is counted by its /64 (what one host is given): addresses of one /64 share the limit, another /64 does not", async () => {
    clearApiKeyCache();
    const intoMinute = Date.now() % 60_000;
    if (intoMinute > 45_000) await new Promise((r) => setTimeout(r, 60_500 - intoMinute));
    const hex = () => Math.floor(Math.random() * 0x10000).toString(16);
    // A /64 of the documentation range; each request from another address in it, as a host with SLAAC or a cloud VM can.
    const prefix = `2001:db8:${hex()}:${hex()}`;
    const inPrefix = () => `${prefix}:${hex()}:${hex()}:${hex()}:${hex()}`;
    const madeUp = () => `otr_${crypto.randomUUID().replaceAll("-", "").slice(0, 20)}_${"A".repeat(32)}`;
    const from = (ip: string) => postJson("/workflow/start", UNKNOWN_WORKFLOW, madeUp(), { "cf-connecting-ip": ip });
    const statuses = new Map<number, number>();
    for (let i = 0; i < 200; i++) {
      const res = await from(inPrefix());
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
    }
    expect(statuses.get(401)).toBeLessThanOrEqual(121);
    expect(statuses.get(429)).toBeGreaterThanOrEqual(79);
    // The /64 written another way (zeros compressed, upper case) is the same client.
    expect((await from(`${prefix.toUpperCase()}::1`)).status).toBe(429);
    // The next /64 is another client.
    expect((await from(`2001:db8:${hex()}:${hex()}::1`)).status).toBe(401);
  }, 30_000);
});
