/**
 * Admin API for webhook endpoints: happy path, errors, and security (secrets, tenants, URLs), and
 * POST /admin/v1/webhooks/seal-secrets (legacy plain and older-key secrets sealed in place).
 */
import { createExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import app from "../../src/index.ts";
import {
  DEFAULT_PREVIOUS_SECRET_VALID_FOR_SECONDS,
  MAX_PREVIOUS_SECRET_VALID_FOR_SECONDS,
  MAX_WEBHOOK_ENDPOINTS_PER_ORGANIZATION,
} from "../../src/db/webhooks.ts";
import { refusedRange } from "../../src/shared/ip-ranges.ts";
import { interceptD1InPlace } from "../support/d1-intercept.ts";
import { openSecret, sealSecret, webhookSecretAad } from "../../src/shared/secret-box.ts";
import { checkWebhookAddress, dnsResolverFrom } from "../../src/webhooks/address-check.ts";
import { SEAL_LIMIT_DEFAULT, type SealReport, sealQueryBudget } from "../../src/webhooks/secret-reseal.ts";
import { generateWebhookSecret } from "../../src/webhooks/signing.ts";
import { webhookUrlProblem } from "../../src/webhooks/url-policy.ts";
import { admin, type ErrorBody, readAllPages, seedOrganization, TEST_ADMIN_KEY } from "./helpers.ts";
import { setDns } from "./webhook-helpers.ts";

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
    expect(await deliveries.json()).toEqual({ deliveries: [], next: null });

    const deleted = await admin("DELETE", `${base(organizationId)}/${endpoint.id}`);
    expect(deleted.status).toBe(200);
    expect(((await deleted.json()) as { deletedAt: string }).deletedAt).toBeTypeOf("string");
    const after = (await (await admin("GET", base(organizationId))).json()) as { webhooks: Array<{ id: string }> };
    expect(after.webhooks.map((w) => w.id)).not.toContain(endpoint.id);
    // The delivery log of a deleted endpoint stays readable.
    expect((await admin("GET", `${base(organizationId)}/${endpoint.id}/deliveries`)).status).toBe(200);
  });
});

describe("webhook endpoints: rotating a secret with an overlap", () => {
  const previousStored = (id: string) =>
    env.DB.prepare("SELECT secret, previous_secret, previous_secret_expires_at FROM webhook_endpoints WHERE id = ?")
      .bind(id)
      .first<{ secret: string; previous_secret: string | null; previous_secret_expires_at: string | null }>();

  it("the replaced secret keeps signing for 24 h by default, or as long as the body says (0: not at all); listings say until when, never the secret", async () => {
    const { organizationId } = await seedOrganization();
    const endpoint = (await (await admin("POST", base(organizationId), { url: "https://hooks.example.com/r" })).json()) as {
      id: string;
      secret: string;
      previousSecretExpiresAt: string | null;
    };
    expect(endpoint.previousSecretExpiresAt).toBeNull();
    const aad = webhookSecretAad(organizationId, endpoint.id);
    const before = Date.now();
    const rotated = (await (await admin("POST", `${base(organizationId)}/${endpoint.id}/rotate-secret`)).json()) as {
      secret: string;
      previousSecretExpiresAt: string;
    };
    const until = Date.parse(rotated.previousSecretExpiresAt);
    expect(until).toBeGreaterThanOrEqual(before + DEFAULT_PREVIOUS_SECRET_VALID_FOR_SECONDS * 1000 - 1_000);
    expect(until).toBeLessThanOrEqual(Date.now() + DEFAULT_PREVIOUS_SECRET_VALID_FOR_SECONDS * 1000);
    // The replaced secret, sealed on its own row as before (never plain), opens to the one replaced.
    const row = await previousStored(endpoint.id);
    expect(row!.previous_secret).not.toContain("whsec_");
    expect(await openSecret(env.WEBHOOK_SECRET_KEYS, row!.previous_secret!, aad)).toBe(endpoint.secret);
    const list = (await (await admin("GET", base(organizationId))).json()) as { webhooks: Array<Record<string, unknown>> };
    expect(list.webhooks.find((w) => w.id === endpoint.id)).toMatchObject({ previousSecretExpiresAt: rotated.previousSecretExpiresAt });
    expect(JSON.stringify(list)).not.toContain("whsec_");

    // A second rotation replaces the first one's overlap: the secret it replaced is the previous one now.
    const again = (await (
      await admin("POST", `${base(organizationId)}/${endpoint.id}/rotate-secret`, { previousSecretValidForSeconds: 3600 })
    ).json()) as { secret: string; previousSecretExpiresAt: string };
    expect(Date.parse(again.previousSecretExpiresAt) - Date.now()).toBeLessThanOrEqual(3_600_000);
    expect(Date.parse(again.previousSecretExpiresAt) - Date.now()).toBeGreaterThan(3_500_000);
    expect(await openSecret(env.WEBHOOK_SECRET_KEYS, (await previousStored(endpoint.id))!.previous_secret!, aad)).toBe(rotated.secret);

    // No overlap asked for: nothing kept.
    const alone = (await (
      await admin("POST", `${base(organizationId)}/${endpoint.id}/rotate-secret`, { previousSecretValidForSeconds: 0 })
    ).json()) as { previousSecretExpiresAt: string | null };
    expect(alone.previousSecretExpiresAt).toBeNull();
    expect(await previousStored(endpoint.id)).toMatchObject({ previous_secret: null, previous_secret_expires_at: null });
  });

  it("a bad overlap is 400 invalid_request (a body that is not JSON: invalid_json), and the secret is not rotated", async () => {
    const { organizationId } = await seedOrganization();
    const endpoint = (await (await admin("POST", base(organizationId), { url: "https://hooks.example.com/r" })).json()) as { id: string };
    const stored = (await previousStored(endpoint.id))!.secret;
    for (const body of [
      { previousSecretValidForSeconds: -1 },
      { previousSecretValidForSeconds: MAX_PREVIOUS_SECRET_VALID_FOR_SECONDS + 1 },
      { previousSecretValidForSeconds: 1.5 },
      { previousSecretValidForSeconds: "3600" },
      { previousSecretValidForSeconds: null },
      { keepFor: 60 },
      "[]",
      "{",
    ]) {
      const res = await admin("POST", `${base(organizationId)}/${endpoint.id}/rotate-secret`, body);
      expect([JSON.stringify(body), res.status]).toEqual([JSON.stringify(body), 400]);
      const error = ((await res.json()) as ErrorBody).error;
      expect(error.code).toBe(body === "{" ? "invalid_json" : "invalid_request");
    }
    expect((await previousStored(endpoint.id))!.secret).toBe(stored);
  });
});

describe("webhook endpoints and their deliveries: lists, a page at a time", () => {
  const tiedAt = "2999-01-01T00:00:00.000Z";

  it("`next` until null reads every live endpoint of the organization once, newest first, ties by id", async () => {
    const { organizationId } = await seedOrganization();
    const other = await seedOrganization();
    await admin("POST", base(other.organizationId), { url: "https://hooks.example.com/other" });
    const made: string[] = [];
    for (let i = 0; i < 5; i++)
      made.push(
        ((await (await admin("POST", base(organizationId), { url: `https://hooks.example.com/${i}` })).json()) as { id: string }).id,
      );
    for (const id of made.slice(0, 2))
      await env.DB.prepare("UPDATE webhook_endpoints SET created_at = ? WHERE id = ?").bind(tiedAt, id).run();
    expect((await admin("DELETE", `${base(organizationId)}/${made[4]}`)).status).toBe(200);

    const { items, pages } = await readAllPages<{ id: string; createdAt: string }>(base(organizationId), "webhooks", 2);
    expect(items.map((w) => w.id).sort()).toEqual(made.slice(0, 4).sort());
    expect(pages.map((p) => p.items.length)).toEqual([2, 2]);
    expect(pages.at(-1)!.next).toBeNull();
    const order = items.map((w) => `${w.createdAt} ${w.id}`);
    expect(order).toEqual([...order].sort().reverse());
    expect(items.slice(0, 2).map((w) => w.id)).toEqual(made.slice(0, 2).sort().reverse());
  });

  it("`next` until null reads every delivery attempt once, newest first: none is out of reach past the first page", async () => {
    const { organizationId } = await seedOrganization();
    const { id } = (await (await admin("POST", base(organizationId), { url: "https://hooks.example.com/log" })).json()) as { id: string };
    const insert = env.DB.prepare(
      "INSERT INTO webhook_attempts (id, endpoint_id, organization_id, message_id, event_type, workflow_id, attempt, status, attempted_at) " +
        "VALUES (?, ?, ?, ?, 'run.completed', ?, ?, 'failed', ?)",
    );
    // 7 attempts: three at one instant (ties by id), the rest a second apart.
    const attempts = Array.from({ length: 7 }, (_, i) => ({
      id: `att_${String(i).padStart(2, "0")}_${crypto.randomUUID().slice(0, 6)}`,
      at: i < 3 ? "2026-01-01T00:00:09.000Z" : `2026-01-01T00:00:0${i}.000Z`,
    }));
    await env.DB.batch(attempts.map((a, i) => insert.bind(a.id, id, organizationId, `msg_${i}`, `wf_${i}`, 1, a.at)));

    const { items, pages } = await readAllPages<{ webhookId: string; attemptedAt: string }>(
      `${base(organizationId)}/${id}/deliveries`,
      "deliveries",
      3,
    );
    expect(items.map((d) => d.webhookId).sort()).toEqual(attempts.map((_, i) => `msg_${i}`).sort());
    expect(pages.map((p) => p.items.length)).toEqual([3, 3, 1]);
    expect(items.map((d) => d.attemptedAt)).toEqual(
      attempts
        .map((a) => a.at)
        .sort()
        .reverse(),
    );
    // The tied three come newest-id first.
    expect(items.slice(0, 3).map((d) => d.webhookId)).toEqual(["msg_2", "msg_1", "msg_0"]);
  });

  it("refuses bad paging parameters with 400", async () => {
    const { organizationId } = await seedOrganization();
    const { id } = (await (await admin("POST", base(organizationId), { url: "https://hooks.example.com/q" })).json()) as { id: string };
    for (const path of [base(organizationId), `${base(organizationId)}/${id}/deliveries`])
      for (const query of ["limit=0", "limit=1e2", "limit=2&limit=3", "before=not_a_cursor", "before=%2F%2F", "after=x"]) {
        const res = await admin("GET", `${path}?${query}`);
        expect([res.status, ((await res.json()) as ErrorBody).error.code], `${path}?${query}`).toEqual([400, "invalid_request"]);
      }
    expect((await admin("GET", `${base(organizationId)}?limit=501`)).status).toBe(400);
    expect((await admin("GET", `${base(organizationId)}/${id}/deliveries?limit=201`)).status).toBe(400);
  });
});

const SEAL = "/admin/v1/webhooks/seal-secrets";
const stored = async (id: string) =>
  (await env.DB.prepare("SELECT secret FROM webhook_endpoints WHERE id = ?").bind(id).first<{ secret: string }>())!.secret;
const setStored = (id: string, secret: string) =>
  env.DB.prepare("UPDATE webhook_endpoints SET secret = ? WHERE id = ?").bind(secret, id).run();

/** An endpoint of `organizationId` whose row holds its secret as rows written before encryption do: plain. */
async function legacyEndpoint(organizationId: string) {
  const created = (await (await admin("POST", base(organizationId), { url: "https://hooks.example.com/legacy" })).json()) as { id: string };
  const plain = generateWebhookSecret();
  await setStored(created.id, plain);
  return { id: created.id, plain };
}

/** POST seal-secrets until `next` is null (from `start`, with `limit` when given); every answer, in order. */
async function sealAll(start = "", limit?: number): Promise<SealReport[]> {
  const pages: SealReport[] = [];
  let after: string | null = start;
  while (after !== null) {
    const query = new URLSearchParams({ ...(after ? { after } : {}), ...(limit === undefined ? {} : { limit: String(limit) }) });
    const res = await admin("POST", query.size > 0 ? `${SEAL}?${query}` : SEAL);
    expect(res.status).toBe(200);
    const page = (await res.json()) as SealReport;
    pages.push(page);
    after = page.next;
  }
  return pages;
}
const total = (pages: SealReport[], field: "sealed" | "resealed" | "alreadyCurrent") => pages.reduce((n, p) => n + p[field], 0);

/** Rows a seal-secrets answer accounted for. */
const handled = (page: SealReport) => page.sealed + page.resealed + page.alreadyCurrent + page.unreadable.length;

/**
 * `count` legacy plain rows whose ids share a prefix sorting after every other test's ids
 * (`whk_<hex>`, `whk_bulk_…`), so `?after=<prefix>` starts at the first of them and they are the
 * last rows of the table. `remove` deletes them (rows left plain would change other tests' counts).
 */
async function legacyRows(count: number) {
  const { organizationId } = await seedOrganization();
  const prefix = `whk_zz_${crypto.randomUUID().slice(0, 8)}_`;
  const rows = Array.from({ length: count }, (_, i) => ({ id: `${prefix}${String(i).padStart(4, "0")}`, plain: generateWebhookSecret() }));
  const insert = env.DB.prepare(
    "INSERT INTO webhook_endpoints (id, organization_id, url, events, secret) VALUES (?, ?, 'https://hooks.example.com/z', '[\"run.completed\"]', ?)",
  );
  await env.DB.batch(rows.map((r) => insert.bind(r.id, organizationId, r.plain)));
  return {
    organizationId,
    prefix,
    rows,
    remove: () => env.DB.prepare("DELETE FROM webhook_endpoints WHERE id LIKE ?").bind(`${prefix}%`).run(),
  };
}

/**
 * env.DB that counts what Cloudflare counts against a Worker invocation's D1 queries: each
 * statement run alone, and each statement of a batch (`roundTrips` counts calls to D1).
 */
function countingDb(db: D1Database = env.DB) {
  const real = new WeakMap<object, D1PreparedStatement>();
  const counts = { queries: 0, roundTrips: 0 };
  const one =
    <T>(call: () => Promise<T>) =>
    () => {
      counts.queries++;
      counts.roundTrips++;
      return call();
    };
  const wrap = (statement: D1PreparedStatement): D1PreparedStatement => {
    const wrapped = {
      bind: (...values: unknown[]) => wrap(statement.bind(...values)),
      first: (column?: string) => one(() => (column === undefined ? statement.first() : statement.first(column)))(),
      all: one(() => statement.all()),
      run: one(() => statement.run()),
      raw: one(() => statement.raw()),
    };
    real.set(wrapped, statement);
    return wrapped as unknown as D1PreparedStatement;
  };
  const counted = {
    prepare: (query: string) => wrap(db.prepare(query)),
    batch: (statements: D1PreparedStatement[]) => {
      counts.queries += statements.length;
      counts.roundTrips++;
      return db.batch(statements.map((s) => real.get(s) ?? s));
    },
  } as unknown as D1Database;
  return { db: counted, counts };
}

/** POST seal-secrets through the app with `db` as env.DB. */
const sealWith = (db: D1Database, query: string) =>
  app.fetch(
    new Request(new URL(`${SEAL}${query}`, "http://edge.test"), { method: "POST", headers: { authorization: `Bearer ${TEST_ADMIN_KEY}` } }),
    { ...env, DB: db } as Env,
    createExecutionContext(),
  );

describe("sealing stored webhook secrets in bulk: happy path", () => {
  it("seals legacy plain rows (deleted endpoints' too) and re-seals older-key rows, secrets unchanged; current rows untouched; idempotent", async () => {
    const { organizationId } = await seedOrganization();
    const legacy = await legacyEndpoint(organizationId);
    const deleted = await legacyEndpoint(organizationId);
    await admin("DELETE", `${base(organizationId)}/${deleted.id}`);
    const current = (await (await admin("POST", base(organizationId), { url: "https://hooks.example.com/current" })).json()) as {
      id: string;
      secret: string;
    };
    const currentBefore = await stored(current.id);
    const older = (await (await admin("POST", base(organizationId), { url: "https://hooks.example.com/older" })).json()) as {
      id: string;
      secret: string;
    };
    const aad = (id: string) => webhookSecretAad(organizationId, id);
    const edge1 = env.WEBHOOK_SECRET_KEYS.split(",").find((k) => k.startsWith("edge1:"))!;
    await setStored(older.id, await sealSecret(edge1, older.secret, aad(older.id)));

    const first = await sealAll();
    expect(total(first, "sealed")).toBe(2);
    expect(total(first, "resealed")).toBe(1);
    expect(total(first, "alreadyCurrent")).toBeGreaterThanOrEqual(1);
    expect(first.flatMap((p) => p.unreadable)).toEqual([]);
    for (const [id, secret] of [
      [legacy.id, legacy.plain],
      [deleted.id, deleted.plain],
      [older.id, older.secret],
    ] as const) {
      const value = await stored(id);
      expect(value).toMatch(/^enc1:edge2:/);
      expect(value).not.toContain(secret);
      expect(await openSecret(env.WEBHOOK_SECRET_KEYS, value, aad(id))).toBe(secret);
    }
    // A row already under the newest key is not rewritten.
    expect(await stored(current.id)).toBe(currentBefore);

    const second = await sealAll();
    expect([total(second, "sealed"), total(second, "resealed")]).toEqual([0, 0]);
    expect(total(second, "alreadyCurrent")).toBe(total(first, "alreadyCurrent") + 3);
  });

  it("re-seals a replaced secret still signing (edge1 → edge2, its overlap kept), drops one whose overlap ended, names one that does not open", async () => {
    const { organizationId } = await seedOrganization();
    const create = async (path: string) =>
      (await (await admin("POST", base(organizationId), { url: `https://hooks.example.com/${path}` })).json()) as { id: string };
    const [signing, ended, unreadable] = [await create("signing"), await create("ended"), await create("unreadable")];
    const aad = (id: string) => webhookSecretAad(organizationId, id);
    const edge1 = env.WEBHOOK_SECRET_KEYS.split(",").find((k) => k.startsWith("edge1:"))!;
    const replaced = generateWebhookSecret();
    const overlapEnds = new Date(Date.now() + 3_600_000).toISOString();
    const setPrevious = (id: string, value: string, expiresAt: string) =>
      env.DB.prepare("UPDATE webhook_endpoints SET previous_secret = ?, previous_secret_expires_at = ? WHERE id = ?")
        .bind(value, expiresAt, id)
        .run();
    await setPrevious(signing.id, await sealSecret(edge1, replaced, aad(signing.id)), overlapEnds);
    await setPrevious(ended.id, await sealSecret(edge1, replaced, aad(ended.id)), new Date(Date.now() - 1_000).toISOString());
    const retiredValue = (await sealSecret(env.WEBHOOK_SECRET_KEYS, replaced, aad(unreadable.id))).replace(/^enc1:edge2:/, "enc1:retired:");
    await setPrevious(unreadable.id, retiredValue, overlapEnds);
    const currentBefore = await stored(signing.id);
    const previousOf = (id: string) =>
      env.DB.prepare("SELECT previous_secret, previous_secret_expires_at FROM webhook_endpoints WHERE id = ?")
        .bind(id)
        .first<{ previous_secret: string | null; previous_secret_expires_at: string | null }>();

    const first = await sealAll();
    const named = first.flatMap((p) => p.unreadable).filter((u) => u.organizationId === organizationId);
    expect(named.map((u) => u.webhookId)).toEqual([unreadable.id]);
    expect(named[0]!.error).toMatch(/^its replaced secret, which signs until .*key "retired", which is not configured/);
    expect(total(first, "resealed")).toBeGreaterThanOrEqual(2);
    // Still signing: the same secret under edge2, for the same overlap; the current one untouched.
    const signingRow = (await previousOf(signing.id))!;
    expect(signingRow.previous_secret).toMatch(/^enc1:edge2:/);
    expect(await openSecret(env.WEBHOOK_SECRET_KEYS, signingRow.previous_secret!, aad(signing.id))).toBe(replaced);
    expect(signingRow.previous_secret_expires_at).toBe(overlapEnds);
    expect(await stored(signing.id)).toBe(currentBefore);
    // Ended: gone, as it never signs again. Unreadable: left as it was.
    expect(await previousOf(ended.id)).toEqual({ previous_secret: null, previous_secret_expires_at: null });
    expect(await previousOf(unreadable.id)).toEqual({ previous_secret: retiredValue, previous_secret_expires_at: overlapEnds });
    // So no value of these rows is under edge1 any more: the key could be dropped.
    const underEdge1 = await env.DB.prepare(
      "SELECT count(*) AS n FROM webhook_endpoints WHERE organization_id = ? AND (secret LIKE 'enc1:edge1:%' OR previous_secret LIKE 'enc1:edge1:%')",
    )
      .bind(organizationId)
      .first<{ n: number }>();
    expect(underEdge1!.n).toBe(0);

    const second = await sealAll();
    expect(total(second, "resealed")).toBe(0);
    // Removed, so that the tests after this one see no unreadable row but their own.
    await env.DB.prepare("DELETE FROM webhook_endpoints WHERE id = ?").bind(unreadable.id).run();
  });

  it("works through a large table in bounded pages: `next` until null, 500 rows a call at most", async () => {
    const { organizationId } = await seedOrganization();
    const rows = Array.from({ length: 520 }, (_, i) => ({
      id: `whk_bulk_${String(i).padStart(4, "0")}_${organizationId}`,
      plain: generateWebhookSecret(),
    }));
    const insert = env.DB.prepare(
      "INSERT INTO webhook_endpoints (id, organization_id, url, events, secret) VALUES (?, ?, 'https://hooks.example.com/b', '[\"run.completed\"]', ?)",
    );
    await env.DB.batch(rows.map((r) => insert.bind(r.id, organizationId, r.plain)));

    const pages = await sealAll();
    expect(pages.length).toBeGreaterThanOrEqual(2);
    for (const page of pages) expect(page.sealed + page.resealed + page.alreadyCurrent + page.unreadable.length).toBeLessThanOrEqual(500);
    expect(total(pages, "sealed")).toBe(520);
    const left = await env.DB.prepare(
      "SELECT count(*) AS n FROM webhook_endpoints WHERE organization_id = ? AND secret NOT LIKE 'enc1:edge2:%'",
    )
      .bind(organizationId)
      .first<{ n: number }>();
    expect(left!.n).toBe(0);
    const last = rows[519]!;
    expect(await openSecret(env.WEBHOOK_SECRET_KEYS, await stored(last.id), webhookSecretAad(organizationId, last.id))).toBe(last.plain);
  });
});

describe("sealing stored webhook secrets in bulk: limit", () => {
  it("a small limit is honoured and `next` pages through every row: full pages until a short last one, next null", async () => {
    const table = await legacyRows(10);
    try {
      const pages = await sealAll(table.prefix, 4);
      expect(pages.map(handled)).toEqual([4, 4, 2]);
      expect(pages.map((p) => p.next)).toEqual([table.rows[3]!.id, table.rows[7]!.id, null]);
      expect(pages.map((p) => p.sealed)).toEqual([4, 4, 2]);
      for (const row of table.rows) {
        const value = await stored(row.id);
        expect(value).toMatch(/^enc1:edge2:/);
        expect(await openSecret(env.WEBHOOK_SECRET_KEYS, value, webhookSecretAad(table.organizationId, row.id))).toBe(row.plain);
      }
      // limit=1 walks them one by one; sealed already, so nothing is written.
      const single = await sealAll(table.prefix, 1);
      expect(single.map(handled)).toEqual([...table.rows.map(() => 1), 0]);
      expect(single.map((p) => p.alreadyCurrent)).toEqual([...table.rows.map(() => 1), 0]);
    } finally {
      await table.remove();
    }
  });

  it("limit=40 (the Workers Free plan's setting) makes at most 41 D1 queries, under the Free plan's 50", async () => {
    const table = await legacyRows(45);
    try {
      const { db, counts } = countingDb();
      const res = await sealWith(db, `?after=${table.prefix}&limit=40`);
      expect(res.status).toBe(200);
      const page = (await res.json()) as SealReport;
      expect([page.sealed, page.next]).toEqual([40, table.rows[39]!.id]);
      // One SELECT and 40 conditional UPDATEs in one batch.
      expect(counts).toEqual({ queries: 41, roundTrips: 2 });
      expect(counts.queries).toBeLessThanOrEqual(sealQueryBudget(40));
      expect(counts.queries).toBeLessThanOrEqual(50);
      // Rows already current cost no write: the read alone.
      const again = countingDb();
      expect((await sealWith(again.db, `?after=${table.prefix}&limit=40`)).status).toBe(200);
      expect(again.counts).toEqual({ queries: 1, roundTrips: 1 });
    } finally {
      await table.remove();
    }
  });

  it("without limit a call works 500 rows as before: at most 501 D1 queries (5 batches of 100), under the Paid plan's 1,000", async () => {
    const table = await legacyRows(SEAL_LIMIT_DEFAULT + 5);
    try {
      const { db, counts } = countingDb();
      const res = await sealWith(db, `?after=${table.prefix}`);
      expect(res.status).toBe(200);
      const page = (await res.json()) as SealReport;
      expect([page.sealed, page.next]).toEqual([500, table.rows[499]!.id]);
      expect(counts).toEqual({ queries: 501, roundTrips: 6 });
      expect(counts.queries).toBeLessThanOrEqual(sealQueryBudget(SEAL_LIMIT_DEFAULT));
      expect(await stored(table.rows[500]!.id)).toBe(table.rows[500]!.plain);
    } finally {
      await table.remove();
    }
  });

  it("/openapi.json documents limit: an integer from 1 to 500, default 500", async () => {
    const doc = (await (await app.fetch(new Request("http://edge.test/openapi.json"), env, createExecutionContext())).json()) as {
      paths: Record<string, Record<string, { parameters: Array<{ name: string; in: string; schema: Record<string, unknown> }> }>>;
    };
    const limit = doc.paths["/admin/v1/webhooks/seal-secrets"]!.post!.parameters.find((p) => p.name === "limit");
    expect(limit).toMatchObject({ in: "query", schema: { type: "integer", minimum: 1, maximum: 500, default: 500 } });
  });
});

describe("webhook endpoints: errors", () => {
  it("seal-secrets refuses a limit that is not an integer from 1 to 500: 400 invalid_request naming limit, nothing written", async () => {
    const { organizationId } = await seedOrganization();
    const legacy = await legacyEndpoint(organizationId);
    for (const limit of ["0", "-1", "-500", "501", "100000", "abc", "1.5", "", "Infinity", "5abc", "0x10", "1e2", "%2040"]) {
      const res = await admin("POST", `${SEAL}?limit=${encodeURIComponent(limit)}`);
      const error = ((await res.json()) as ErrorBody).error;
      expect([limit, res.status, error.code]).toEqual([limit, 400, "invalid_request"]);
      expect(error.message).toBe("limit must be an integer from 1 to 500");
      expect(error.issues?.map((i) => i.path)).toEqual(["limit"]);
    }
    const both = ((await (await admin("POST", `${SEAL}?after=..%2Fx&limit=0`)).json()) as ErrorBody).error;
    expect(both.message).toBe("after must be an endpoint id (the previous answer's next); limit must be an integer from 1 to 500");
    expect(await stored(legacy.id)).toBe(legacy.plain);
    await sealAll(); // so that the tests after this one see no plain row but their own
  });

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
    for (const limit of ["0", "0x10", "1e1"]) {
      const badLimit = await admin("GET", `${base(organizationId)}/${created.id}/deliveries?limit=${limit}`);
      expect(badLimit.status, limit).toBe(400);
    }
    await admin("DELETE", `${base(organizationId)}/${created.id}`);
    expect((await admin("DELETE", `${base(organizationId)}/${created.id}`)).status).toBe(404);
    expect((await admin("POST", `${base(organizationId)}/${created.id}/rotate-secret`)).status).toBe(404);
    for (const query of ["?after=..%2Fx", `?after=${"x".repeat(65)}`, "?pageSize=5"]) {
      const res = await admin("POST", `${SEAL}${query}`);
      expect([query, res.status, ((await res.json()) as ErrorBody).error.code]).toEqual([query, 400, "invalid_request"]);
    }
  });

  it("an organization has at most MAX_WEBHOOK_ENDPOINTS_PER_ORGANIZATION live endpoints: the next is 409 too_many_webhooks, nothing written, also when creations race; a deletion frees a place", async () => {
    const { organizationId } = await seedOrganization();
    const create = (i: number | string) => admin("POST", base(organizationId), { url: `https://hooks.example.com/cap/${i}` });
    const made: string[] = [];
    for (let i = 0; i < MAX_WEBHOOK_ENDPOINTS_PER_ORGANIZATION - 2; i++) made.push(((await (await create(i)).json()) as { id: string }).id);
    // Five at once for the last two places.
    const racing = await Promise.all([0, 1, 2, 3, 4].map((i) => create(`race-${i}`)));
    expect(racing.map((r) => r.status).sort()).toEqual([201, 201, 409, 409, 409]);
    const refused = racing.find((r) => r.status === 409)!;
    const body = (await refused.json()) as ErrorBody;
    expect(body.error.code).toBe("too_many_webhooks");
    expect(JSON.stringify(body)).not.toContain("whsec_");
    const live = () =>
      env.DB.prepare("SELECT COUNT(*) AS n FROM webhook_endpoints WHERE organization_id = ? AND deleted_at IS NULL")
        .bind(organizationId)
        .first<number>("n");
    expect(await live()).toBe(MAX_WEBHOOK_ENDPOINTS_PER_ORGANIZATION);
    expect((await create("one-more")).status).toBe(409);
    expect((await admin("DELETE", `${base(organizationId)}/${made[0]}`)).status).toBe(200);
    expect((await create("after-delete")).status).toBe(201);
    expect(await live()).toBe(MAX_WEBHOOK_ENDPOINTS_PER_ORGANIZATION);
  });

  it("two rotations at once: the one that writes first answers its secret, the other is 409 webhook_secret_conflict (its secret never stored, never shown)", async () => {
    const { organizationId } = await seedOrganization();
    const created = (await (await admin("POST", base(organizationId), { url: "https://hooks.example.com/r" })).json()) as { id: string };
    const rotate = `${base(organizationId)}/${created.id}/rotate-secret`;
    // The first rotation's write waits until a second rotation has read, written and answered.
    let releaseFirst!: () => void;
    const held = new Promise<void>((resolve) => {
      releaseFirst = resolve;
    });
    let writes = 0;
    const undo = interceptD1InPlace(env.DB, (call) => {
      if (call.kind === "statement" && /^update "webhook_endpoints" set "secret"/i.test(call.sql) && ++writes === 1) return held;
    });
    try {
      const first = admin("POST", rotate);
      await vi.waitFor(() => expect(writes).toBe(1));
      const second = await admin("POST", rotate);
      releaseFirst();
      const late = await first;
      expect(second.status).toBe(200);
      const answered = ((await second.json()) as { secret: string }).secret;
      expect(late.status).toBe(409);
      const conflict = (await late.json()) as ErrorBody;
      expect(conflict.error.code).toBe("webhook_secret_conflict");
      expect(JSON.stringify(conflict)).not.toContain("whsec_");
      // Deliveries are signed with the secret the caller was given.
      const stored = await env.DB.prepare("SELECT secret FROM webhook_endpoints WHERE id = ?").bind(created.id).first<{ secret: string }>();
      expect(await openSecret(env.WEBHOOK_SECRET_KEYS, stored!.secret, webhookSecretAad(organizationId, created.id))).toBe(answered);
    } finally {
      undo();
      releaseFirst();
    }
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

  it("create, rotate and seal-secrets answer 500 with a code naming the missing secret, log it, and write nothing", async () => {
    const { organizationId } = await seedOrganization();
    const existing = (await (await admin("POST", base(organizationId), { url: "https://hooks.example.com/a" })).json()) as { id: string };
    const legacy = await legacyEndpoint(organizationId);
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
        const seal = await adminWithKeys(keys, "POST", SEAL);
        for (const res of [create, rotate, seal]) {
          const error = ((await res.json()) as ErrorBody).error;
          expect([keys, res.status, error.code]).toEqual([keys, 500, code]);
          expect(error.message).toContain("WEBHOOK_SECRET_KEYS secret is");
          expect(error.message).toContain(code.endsWith("missing") ? "not set; the operator must set it" : "malformed");
          expect(error.message).toContain("nothing was written");
        }
        expect(logged.mock.calls.filter(([line]) => String(line).includes(`"code":"${code}"`)).length).toBeGreaterThanOrEqual(3);
      }
    } finally {
      logged.mockRestore();
    }
    // Nothing half-written: no new endpoint, the existing one's secret and timestamp as they were, the legacy row still plain.
    expect((await endpointRows(organizationId)).results).toEqual(before);
    expect(await stored(legacy.id)).toBe(legacy.plain);
    // The configured keys still work: the failure was the configuration's, not the data's.
    expect((await admin("POST", `${base(organizationId)}/${existing.id}/rotate-secret`)).status).toBe(200);
    expect(total(await sealAll(), "sealed")).toBe(1);
    expect(await stored(legacy.id)).toMatch(/^enc1:edge2:/);
  });

  it("rotating an endpoint that does not exist (or was deleted) is 404 webhook_not_found, whether or not WEBHOOK_SECRET_KEYS is usable", async () => {
    const { organizationId } = await seedOrganization();
    const other = await seedOrganization();
    const theirs = (await (await admin("POST", base(other.organizationId), { url: "https://hooks.example.com/t" })).json()) as {
      id: string;
    };
    const deleted = (await (await admin("POST", base(organizationId), { url: "https://hooks.example.com/d" })).json()) as { id: string };
    expect((await admin("DELETE", `${base(organizationId)}/${deleted.id}`)).status).toBe(200);
    for (const keys of [undefined, "no-key-id", env.WEBHOOK_SECRET_KEYS])
      for (const id of ["whk_doesnotexist00000000", theirs.id, deleted.id]) {
        const res = await adminWithKeys(keys, "POST", `${base(organizationId)}/${id}/rotate-secret`);
        expect([keys, id, res.status, ((await res.json()) as ErrorBody).error.code]).toEqual([keys, id, 404, "webhook_not_found"]);
      }
  });

  it("the OpenAPI document lists both codes under 500 for create, rotate and seal-secrets", async () => {
    const doc = (await (await app.fetch(new Request("http://edge.test/openapi.json"), env, createExecutionContext())).json()) as {
      paths: Record<string, Record<string, { responses: Record<string, { description: string }> }>>;
    };
    for (const path of [
      "/admin/v1/organizations/{orgId}/webhooks",
      "/admin/v1/organizations/{orgId}/webhooks/{webhookId}/rotate-secret",
      "/admin/v1/webhooks/seal-secrets",
    ]) {
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

  it("seal-secrets needs the admin key, and refused, it writes nothing", async () => {
    const { organizationId, key } = await seedOrganization();
    const legacy = await legacyEndpoint(organizationId);
    for (const credential of ["wrong", key]) {
      const res = await admin("POST", SEAL, undefined, credential);
      expect(res.status).toBe(401);
      expect(((await res.json()) as ErrorBody).error.code).toBe("unauthorized");
    }
    expect(await stored(legacy.id)).toBe(legacy.plain);
    await sealAll();
  });

  it("seal-secrets seals each organization's rows with their own row's AAD: a sealed value opens only on its own row", async () => {
    const a = await seedOrganization();
    const b = await seedOrganization();
    const rowA = await legacyEndpoint(a.organizationId);
    const rowB = await legacyEndpoint(b.organizationId);
    await sealAll();
    const sealedA = await stored(rowA.id);
    const sealedB = await stored(rowB.id);
    expect(await openSecret(env.WEBHOOK_SECRET_KEYS, sealedA, webhookSecretAad(a.organizationId, rowA.id))).toBe(rowA.plain);
    expect(await openSecret(env.WEBHOOK_SECRET_KEYS, sealedB, webhookSecretAad(b.organizationId, rowB.id))).toBe(rowB.plain);
    // Not on the other organization's row, nor under the other organization with the same endpoint id.
    for (const aad of [webhookSecretAad(b.organizationId, rowB.id), webhookSecretAad(b.organizationId, rowA.id)]) {
      await expect(openSecret(env.WEBHOOK_SECRET_KEYS, sealedA, aad)).rejects.toMatchObject({ code: "secret_not_authentic" });
    }
  });

  it("seal-secrets leaves a value that does not open as it is and names it (moved from another row, or under an unlisted key)", async () => {
    const { organizationId } = await seedOrganization();
    const source = (await (await admin("POST", base(organizationId), { url: "https://hooks.example.com/src" })).json()) as { id: string };
    const moved = (await (await admin("POST", base(organizationId), { url: "https://hooks.example.com/moved" })).json()) as { id: string };
    const retired = (await (await admin("POST", base(organizationId), { url: "https://hooks.example.com/retired" })).json()) as {
      id: string;
    };
    const sourceCipher = await stored(source.id);
    const edge1 = env.WEBHOOK_SECRET_KEYS.split(",").find((k) => k.startsWith("edge1:"))!;
    // Under an older key, so sealing would rewrite it if it opened here.
    const movedValue = await sealSecret(edge1, "whsec_moved", webhookSecretAad(organizationId, source.id));
    const retiredValue = sourceCipher.replace(/^enc1:edge2:/, "enc1:retired:");
    await setStored(moved.id, movedValue);
    await setStored(retired.id, retiredValue);
    const unreadable = (await sealAll()).flatMap((p) => p.unreadable).filter((u) => u.organizationId === organizationId);
    expect(unreadable.map((u) => u.webhookId).sort()).toEqual([moved.id, retired.id].sort());
    expect(unreadable.find((u) => u.webhookId === moved.id)!.error).toMatch(/does not decrypt for this row/);
    expect(unreadable.find((u) => u.webhookId === retired.id)!.error).toMatch(/key "retired", which is not configured/);
    expect(await stored(moved.id)).toBe(movedValue);
    expect(await stored(retired.id)).toBe(retiredValue);
    expect(await stored(source.id)).toBe(sourceCipher);
    // Removed, so that the tests after this one see no unreadable row but their own.
    await env.DB.prepare("DELETE FROM webhook_endpoints WHERE id IN (?, ?)").bind(moved.id, retired.id).run();
  });

  it("a 404 for a very long webhook id quotes it cut short, not whole (delete, rotate-secret, deliveries)", async () => {
    const org = await seedOrganization();
    const long = `${base(org.organizationId)}/whk_${"d".repeat(8000)}`;
    for (const [method, path] of [
      ["DELETE", long],
      ["POST", `${long}/rotate-secret`],
      ["GET", `${long}/deliveries`],
    ] as const) {
      const res = await admin(method, path);
      expect(res.status, `${method} ${path.slice(-12)}`).toBe(404);
      const error = ((await res.json()) as ErrorBody).error;
      expect([error.code, error.message.length < 300], `${method} ${path.slice(-12)}`).toEqual(["webhook_not_found", true]);
    }
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
      // An empty fragment too: the URL parser says it has no hash, yet it is kept in the URL.
      "https://hooks.example.com/h#",
      // Port 0 names no port: every delivery would fail, for 24 hours of retries.
      "https://hooks.example.com:0/h",
      `https://hooks.example.com/${"a".repeat(2100)}`,
      // Trailing dots name the same host ("localhost.." is localhost); an empty label resolves nowhere.
      "https://localhost../h",
      "https://db.internal.../h",
      "https://hooks..example.com/h",
      // Short as sent, but over the limit as stored (each é is %C3%A9).
      `https://hooks.example.com/${"é".repeat(1_000)}`,
    ];
    for (const url of refused) {
      const res = await admin("POST", base(organizationId), { url });
      expect(res.status, url).toBe(400);
      expect(((await res.json()) as ErrorBody).error.code, url).toMatch(/webhook_url_not_allowed|invalid_request/);
    }
    // Edge tests allow http://127.0.0.1 (as npm run dev does).
    expect((await admin("POST", base(organizationId), { url: "http://127.0.0.1:9999/h" })).status).toBe(201);
  });

  it("security: a port of another protocol (fetch's bad ports: SMTP's 25, IRC's 6667, ...) is 400 webhook_url_not_allowed naming it, nothing written", async () => {
    const { organizationId } = await seedOrganization();
    // workerd's fetch connects to these (browsers and Node refuse to): each delivery would knock on
    // a mail or IRC server, and the delivery log would say how it answered.
    for (const url of [
      "https://hooks.example.com:25/h",
      "https://hooks.example.com:6667/h",
      "https://1.1.1.1:22/h",
      "https://[2606:4700::1111]:6000/h",
      // The loopback http allowed in development too.
      "http://127.0.0.1:25/h",
    ]) {
      const res = await admin("POST", base(organizationId), { url });
      expect(res.status, url).toBe(400);
      const error = ((await res.json()) as ErrorBody).error;
      expect([error.code, error.issues?.map((i) => i.path)], url).toEqual(["webhook_url_not_allowed", ["url"]]);
      expect(error.message, url).toMatch(/port \d+ is another protocol's/);
    }
    const rows = await env.DB.prepare("SELECT COUNT(*) AS n FROM webhook_endpoints WHERE organization_id = ?")
      .bind(organizationId)
      .first<{ n: number }>();
    expect(rows!.n).toBe(0);
    // Ports of HTTP servers are fine, the default one written out too.
    for (const url of ["https://hooks.example.com:8443/h", "https://hooks.example.com:443/h"]) {
      expect((await admin("POST", base(organizationId), { url })).status, url).toBe(201);
    }
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
    // Past DNS's limits no lookup can answer (a resolver's refusal would read as an outage: 503 for good).
    expect(webhookUrlProblem(`https://${"a".repeat(63)}.example.com/h`, prod)).toBeNull();
    expect(webhookUrlProblem(`https://${"a".repeat(64)}.example.com/h`, prod)).toMatch(/label .* longer than 63/);
    const labels = (n: number) => Array.from({ length: n }, () => "a".repeat(49)).join(".");
    expect(webhookUrlProblem(`https://${labels(5)}.com/h`, prod)).toBeNull(); // 253 characters
    expect(webhookUrlProblem(`https://${labels(5)}.comm/h`, prod)).toMatch(/longer than 253/);
    expect(webhookUrlProblem(`https://${"ü".repeat(60)}.example.com/h`, prod)).toMatch(/label .* longer than 63/); // xn--… is longer
    expect(refusedRange("100.64.1.1")).toMatch(/carrier-grade/);
    expect(refusedRange("::ffff:127.0.0.1")).toMatch(/IPv4-mapped/);
    expect(refusedRange("fe80::1")).toMatch(/link-local/);
    expect(refusedRange("2001:db8::1")).toMatch(/documentation/);
    expect(refusedRange("3fff::1")).toMatch(/documentation \(3fff::\/20\)/);
    expect(refusedRange("3fff:fff::1")).toMatch(/documentation/);
    expect(refusedRange("3fff:1000::1")).toBeNull(); // past 3fff::/20: public
    expect(refusedRange("4000::1")).toMatch(/outside 2000::\/3/);
    expect(refusedRange("1.1.1.1")).toBeNull();
  });

  it("looks the host name up: one with a non-public address (A, AAAA, or at the end of a CNAME) or none is refused", async () => {
    const { organizationId } = await seedOrganization();
    const tag = crypto.randomUUID().slice(0, 8);
    const names = {
      private: `private-${tag}.partner.test`,
      v6loopback: `v6-${tag}.partner.test`,
      mixed: `mixed-${tag}.partner.test`,
      cname: `cname-${tag}.partner.test`,
      metadata: `metadata-${tag}.partner.test`,
      missing: `missing-${tag}.partner.test`,
      public: `public-${tag}.partner.test`,
    };
    await setDns(names.private, { A: ["10.1.2.3"] });
    await setDns(names.v6loopback, { A: ["93.184.215.14"], AAAA: ["::1"] });
    await setDns(names.mixed, { A: ["93.184.215.14", "192.168.0.10"] });
    await setDns(names.cname, { CNAME: names.metadata });
    await setDns(names.metadata, { A: ["169.254.169.254"] });
    await setDns(names.public, { A: ["93.184.215.14"], AAAA: ["2606:2800:21f:cb07:6820:80da:af6b:8b2c"] });
    for (const [name, reason] of [
      [names.private, /10\.1\.2\.3.*private/],
      [names.v6loopback, /::1.*loopback/],
      [names.mixed, /192\.168\.0\.10/],
      [names.cname, /169\.254\.169\.254.*link-local/],
      [names.missing, /does not resolve/],
    ] as const) {
      const res = await admin("POST", base(organizationId), { url: `https://${name}/hook` });
      expect(res.status, name).toBe(400);
      const { error } = (await res.json()) as ErrorBody;
      expect(error.code, name).toBe("webhook_url_not_allowed");
      expect(error.message, name).toMatch(reason);
    }
    // A trailing dot is the same name, looked up the same way.
    expect((await admin("POST", base(organizationId), { url: `https://${names.private}./hook` })).status).toBe(400);
    expect((await admin("POST", base(organizationId), { url: `https://${names.public}/hook` })).status).toBe(201);
    const listed = (await (await admin("GET", base(organizationId))).json()) as { webhooks: { url: string }[] };
    expect(listed.webhooks.map((w) => w.url)).toEqual([`https://${names.public}/hook`]);
  });

  it("a registration while the resolver fails is 503 webhook_dns_unavailable with Retry-After, and writes nothing", async () => {
    const { organizationId } = await seedOrganization();
    const tag = crypto.randomUUID().slice(0, 8);
    await setDns(`down-${tag}.partner.test`, { httpStatus: 502 });
    await setDns(`servfail-${tag}.partner.test`, { rcode: 2 });
    for (const name of [`down-${tag}.partner.test`, `servfail-${tag}.partner.test`]) {
      const res = await admin("POST", base(organizationId), { url: `https://${name}/hook` });
      expect(res.status, name).toBe(503);
      expect(res.headers.get("retry-after"), name).toBe("5");
      expect(((await res.json()) as ErrorBody).error.code, name).toBe("webhook_dns_unavailable");
    }
    expect(((await (await admin("GET", base(organizationId))).json()) as { webhooks: unknown[] }).webhooks).toEqual([]);
  });

  it("security: a name whose A lookup already gives a private address is 400, though its AAAA lookup fails (not 503 and a retry for ever)", async () => {
    const { organizationId } = await seedOrganization();
    const tag = crypto.randomUUID().slice(0, 8);
    await setDns(`half-${tag}.partner.test`, { A: ["127.0.0.1"], failing: "AAAA" });
    await setDns(`half-public-${tag}.partner.test`, { A: ["93.184.215.14"], failing: "AAAA" });
    const refused = await admin("POST", base(organizationId), { url: `https://half-${tag}.partner.test/hook` });
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as ErrorBody).error.code).toBe("webhook_url_not_allowed");
    // With only public addresses so far, the failed lookup still leaves the answer unknown.
    const unknown = await admin("POST", base(organizationId), { url: `https://half-public-${tag}.partner.test/hook` });
    expect(unknown.status).toBe(503);
    expect(((await unknown.json()) as ErrorBody).error.code).toBe("webhook_dns_unavailable");
    expect(((await (await admin("GET", base(organizationId))).json()) as { webhooks: unknown[] }).webhooks).toEqual([]);
  });

  it("the lookup is skipped only where WEBHOOK_DNS_RESOLVER is off, and for IP literals", async () => {
    const off = dnsResolverFrom({ WEBHOOK_DNS_RESOLVER: "off" });
    expect(off).toBeNull();
    expect(await checkWebhookAddress("https://nowhere.invalid/h", off)).toEqual({ verdict: "public" });
    expect(dnsResolverFrom({ WEBHOOK_DNS_RESOLVER: "" })).toBe("https://cloudflare-dns.com/dns-query");
    expect(dnsResolverFrom({})).toBe("https://cloudflare-dns.com/dns-query");
    // An IP literal was checked by the URL policy; no resolver is asked (this one does not exist).
    expect(await checkWebhookAddress("https://8.8.8.8/h", "http://127.0.0.1:9/dns-query")).toEqual({ verdict: "public" });
  });

  it("a WEBHOOK_DNS_RESOLVER that is not an http(s) URL: registration is 500 webhook_dns_resolver_invalid, logged, nothing written (not a 503 no retry fixes, nor a bare 500)", async () => {
    const { organizationId } = await seedOrganization();
    for (const resolver of ["1.1.1.1", "ftp://dns.example/dns-query"])
      expect(await checkWebhookAddress("https://hooks.example.com/h", resolver), resolver).toMatchObject({ verdict: "misconfigured" });
    const logged = vi.spyOn(console, "error").mockImplementation(() => undefined);
    try {
      for (const resolver of ["1.1.1.1", "resolver:secret-token@dns.example", "ftp://dns.example/dns-query"]) {
        const res = await app.fetch(
          new Request(new URL(base(organizationId), "http://edge.test"), {
            method: "POST",
            headers: { authorization: `Bearer ${TEST_ADMIN_KEY}`, "content-type": "application/json" },
            body: JSON.stringify({ url: "https://hooks.example.com/h" }),
          }),
          { ...env, WEBHOOK_DNS_RESOLVER: resolver } as Env,
          createExecutionContext(),
        );
        expect(res.status, resolver).toBe(500);
        expect(res.headers.get("retry-after"), resolver).toBeNull();
        const { error } = (await res.json()) as ErrorBody;
        expect(error.code, resolver).toBe("webhook_dns_resolver_invalid");
        expect(error.message, resolver).toMatch(/WEBHOOK_DNS_RESOLVER is not an http\(s\) URL/);
        expect(error.message, resolver).not.toContain("secret-token"); // the value may carry credentials
      }
      expect(logged).toHaveBeenCalledTimes(3);
    } finally {
      logged.mockRestore();
    }
    expect(((await (await admin("GET", base(organizationId))).json()) as { webhooks: unknown[] }).webhooks).toEqual([]);
  });
});
