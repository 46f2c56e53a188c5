import { createExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import app from "../../src/index.ts";
import { MIN_SECRET_LENGTH } from "../../src/shared/signing.ts";
import { MAX_CREDIT_BALANCE } from "../../src/db/credits.ts";
import { MAX_TEMPLATE_CHARS } from "../../src/routes/admin/schemas.ts";
import { interceptD1InPlace } from "../support/d1-intercept.ts";
import { admin, call, createKey, type ErrorBody, readAllPages, TEST_ADMIN_KEY } from "./helpers.ts";

const code = async (res: Response) => ((await res.json()) as ErrorBody).error.code;

async function newOrganization(name = "Acme") {
  const res = await admin("POST", "/admin/v1/organizations", { name });
  expect(res.status).toBe(201);
  return (await res.json()) as { id: string; name: string; credits: { metered: boolean; balance: number | null } };
}

describe("admin API: security", () => {
  it("refuses no key, a wrong key and a tenant API key with 401; accepts the key being rotated out", async () => {
    expect(await code(await call("/admin/v1/organizations"))).toBe("unauthorized");
    expect((await admin("GET", "/admin/v1/organizations", undefined, "not-the-admin-key")).status).toBe(401);
    expect((await admin("GET", "/admin/v1/organizations", undefined, "otr_abcdefgh12_ABCDEFGHIJKLMNOPQRSTUVWXYZ12")).status).toBe(401);
    expect((await admin("GET", "/admin/v1/organizations", undefined, "edge-test-old-admin-key-of-32-characters")).status).toBe(200);
  });

  it("an ADMIN_API_KEY value under 32 characters opens nothing: every admin call is a logged 500 (never the value), the short key's too", async () => {
    const short = "s".repeat(MIN_SECRET_LENGTH - 1);
    const listWith = (configured: string, bearer: string) =>
      app.fetch(
        new Request("http://edge.test/admin/v1/organizations", { headers: { authorization: `Bearer ${bearer}` } }),
        { ...env, ADMIN_API_KEY: configured } as Env,
        createExecutionContext(),
      );
    const errors = vi.spyOn(console, "error").mockImplementation(() => {});
    try {
      for (const configured of [short, `${TEST_ADMIN_KEY},${short}`]) {
        for (const bearer of [short, TEST_ADMIN_KEY]) {
          const res = await listWith(configured, bearer);
          expect([configured.length, bearer.length, res.status, await code(res)]).toEqual([
            configured.length,
            bearer.length,
            500,
            "internal_error",
          ]);
        }
      }
      const logged = errors.mock.calls.map((args) => args.join(" ")).join("\n");
      expect(logged).toContain("ADMIN_API_KEY is too short");
      expect(logged).not.toContain(short);
    } finally {
      errors.mockRestore();
    }
    // No credential is still the caller's 401; 32 characters are enough.
    expect((await listWith(short, "")).status).toBe(401);
    const enough = "e".repeat(MIN_SECRET_LENGTH);
    expect((await listWith(enough, enough)).status).toBe(200);
  });
});

describe("admin API: organizations and API keys", () => {
  it("creates an organization, unmetered until credits are granted", async () => {
    const org = await newOrganization("Globex");
    expect(org.id).toMatch(/^org_[a-z0-9]{12}$/);
    expect(org.credits).toMatchObject({ metered: false, balance: null });
    expect(org).toHaveProperty("openRuns", 0);
    const fetched = await admin("GET", `/admin/v1/organizations/${org.id}`);
    expect(((await fetched.json()) as { name: string }).name).toBe("Globex");
  });

  it("rejects a taken id with 409 and an unknown organization with 404", async () => {
    const id = `org_fixed_${crypto.randomUUID().slice(0, 6)}`;
    expect((await admin("POST", "/admin/v1/organizations", { name: "One", id })).status).toBe(201);
    const again = await admin("POST", "/admin/v1/organizations", { name: "Two", id });
    expect(again.status).toBe(409);
    expect(await code(again)).toBe("organization_exists");
    expect(await code(await admin("GET", "/admin/v1/organizations/org_nope_nope"))).toBe("organization_not_found");
    expect(await code(await admin("GET", `/admin/v1/organizations/${"x".repeat(300)}`))).toBe("organization_not_found");
  });

  it("shows a new key once, lists keys without secrets, and a revoked key stops working", async () => {
    const org = await newOrganization();
    const created = await admin("POST", `/admin/v1/organizations/${org.id}/api-keys`, { name: "ci", rateLimitPerMinute: 30 });
    expect(created.status).toBe(201);
    const key = (await created.json()) as { id: string; key: string; rateLimitPerMinute: number };
    expect(key.key).toMatch(/^otr_[a-z0-9]+_[A-Za-z0-9]{40}$/);
    expect(key.rateLimitPerMinute).toBe(30);

    const listed = (await (await admin("GET", `/admin/v1/organizations/${org.id}/api-keys`)).json()) as {
      apiKeys: Array<Record<string, unknown>>;
    };
    expect(listed.apiKeys).toHaveLength(1);
    expect(JSON.stringify(listed)).not.toContain(key.key.split("_")[2]);

    const use = () => call("/workflow/catalog", { headers: { authorization: `Bearer ${key.key}` } });
    expect((await use()).status).toBe(200);
    expect((await use()).headers.get("x-ratelimit-limit")).toBe("30");
    const revoked = await admin("DELETE", `/admin/v1/organizations/${org.id}/api-keys/${key.id}`);
    expect(revoked.status).toBe(200);
    const body = (await revoked.json()) as { revokedAt: string; revocationEffectiveWithinMs: number };
    expect(body.revokedAt).toBeTruthy();
    expect(body.revocationEffectiveWithinMs).toBe(30_000);
    // The key is cached in this isolate for up to the TTL; a fresh lookup refuses it.
    const { clearApiKeyCache } = await import("../../src/middleware/api-key-auth/index.ts");
    clearApiKeyCache();
    expect((await use()).status).toBe(401);
  });

  it("cannot revoke another organization's key (404)", async () => {
    const a = await newOrganization();
    const b = await newOrganization();
    const key = (await (await admin("POST", `/admin/v1/organizations/${a.id}/api-keys`, { name: "a" })).json()) as { id: string };
    const res = await admin("DELETE", `/admin/v1/organizations/${b.id}/api-keys/${key.id}`);
    expect(res.status).toBe(404);
    expect(await code(res)).toBe("api_key_not_found");
  });

  it("security: a name with control characters (terminal escapes, NUL), or of invisible characters only, is 400 naming it", async () => {
    const org = await newOrganization();
    for (const name of ["\u001b]0;pwned\u0007\u001b[2JAcme", "Ac\u0000me", "line\nbreak", "\u200b", "\u200b\u2060 "]) {
      for (const [path, body] of [
        ["/admin/v1/organizations", { name }],
        [`/admin/v1/organizations/${org.id}/api-keys`, { name }],
      ] as const) {
        const res = await admin("POST", path, body);
        expect(res.status, `${path} ${JSON.stringify(name)}`).toBe(400);
        expect(((await res.json()) as ErrorBody).error.issues?.map((i) => i.path)).toEqual(["name"]);
      }
    }
    expect((await admin("POST", "/admin/v1/organizations", { name: "Zoë & Co. — 東京 🚀" })).status).toBe(201);
  });

  it('security: names are stored in NFC, so "Café" typed as e + U+0301 (NFD) is the same name as with U+00E9, for organizations and API keys', async () => {
    const nfc = "Caf\u00e9";
    const nfd = "Cafe\u0301";
    const org = await newOrganization(nfd);
    expect(org.name).toBe(nfc);
    expect(((await (await admin("GET", `/admin/v1/organizations/${org.id}`)).json()) as { name: string }).name).toBe(nfc);
    const key = (await (await admin("POST", `/admin/v1/organizations/${org.id}/api-keys`, { name: nfd })).json()) as { name: string };
    expect(key.name).toBe(nfc);
    const stored = await env.DB.prepare("SELECT name FROM api_keys WHERE organization_id = ?").bind(org.id).first<{ name: string }>();
    expect(stored!.name).toBe(nfc);
  });

  it("security: a name with a bidi control (Trojan Source), a zero-width or other invisible formatting character is 400 invalid_request naming the character", async () => {
    const org = await newOrganization();
    for (const [name, codePoint] of [
      ["Acme\u202Egnp.exe", "U+202E"], // RIGHT-TO-LEFT OVERRIDE: shows as "Acmeexe.png"
      ["\u2067Acme\u2069", "U+2067"], // RIGHT-TO-LEFT ISOLATE
      ["Ac\u200Fme", "U+200F"], // RIGHT-TO-LEFT MARK
      ["Ac\u061Cme", "U+061C"], // ARABIC LETTER MARK
      ["Ac\u200Bme", "U+200B"], // ZERO WIDTH SPACE: "Acme" twice, looking the same
      ["Ac\u200Dme", "U+200D"], // ZERO WIDTH JOINER outside an emoji
      ["Ac\uFEFFme", "U+FEFF"], // BYTE ORDER MARK inside
      ["Ac\u2060me", "U+2060"], // WORD JOINER
      ["Ac\u00ADme", "U+00AD"], // SOFT HYPHEN
      ["Ac\u2028me", "U+2028"], // LINE SEPARATOR
      ["Ac\u0085me", "U+0085"], // a C1 control (NEXT LINE)
      ["Ac\u{E0041}me", "U+E0041"], // a TAG character
    ] as const) {
      for (const path of ["/admin/v1/organizations", `/admin/v1/organizations/${org.id}/api-keys`]) {
        const res = await admin("POST", path, { name });
        expect(res.status, `${path} ${JSON.stringify(name)}`).toBe(400);
        const { error } = (await res.json()) as ErrorBody;
        expect(error.code).toBe("invalid_request");
        expect(error.issues).toEqual([{ path: "name", message: expect.stringContaining(codePoint) }]);
      }
    }
  });

  it("names in the scripts and emoji people write are taken as sent: an emoji ZWJ sequence, a variation selector, a Persian ZWNJ, right-to-left text", async () => {
    for (const name of [
      "Team \u{1F469}\u200D\u{1F4BB}", // woman technologist: an emoji ZWJ sequence
      "\u{1F3F3}\uFE0F\u200D\u{1F308} Pride", // rainbow flag: VS16 then ZWJ
      "I \u2764\uFE0F NY", // a variation selector picking the emoji form
      "\u0645\u06CC\u200C\u062E\u0648\u0627\u0647\u0645", // Persian with a ZWNJ between two letters
      "\u05E9\u05DC\u05D5\u05DD Acme", // Hebrew then Latin: the reader's bidi algorithm orders it, no control needed
    ]) {
      const res = await admin("POST", "/admin/v1/organizations", { name });
      expect(res.status, JSON.stringify(name)).toBe(201);
      expect(((await res.json()) as { name: string }).name).toBe(name);
    }
  });

  it("__proto__, constructor and prototype are names like any other (a name is a value, never an object key), read back as sent", async () => {
    for (const name of ["__proto__", "constructor", "prototype"]) {
      const org = await newOrganization(name);
      expect(org.name).toBe(name);
      const key = await admin("POST", `/admin/v1/organizations/${org.id}/api-keys`, { name });
      expect(((await key.json()) as { name: string }).name).toBe(name);
      const listed = (await (await admin("GET", `/admin/v1/organizations/${org.id}/api-keys`)).json()) as {
        apiKeys: Array<{ name: string }>;
      };
      expect(listed.apiKeys.map((k) => k.name)).toEqual([name]);
      expect(((await (await admin("GET", `/admin/v1/organizations/${org.id}`)).json()) as { name: string }).name).toBe(name);
    }
  });

  it("a 404 for a very long id quotes it cut short, not whole", async () => {
    const org = await newOrganization();
    for (const path of [`/admin/v1/organizations/${"a".repeat(8000)}`, `/admin/v1/organizations/${org.id}/api-keys/${"b".repeat(8000)}`]) {
      const res = await admin(path.includes("api-keys") ? "DELETE" : "GET", path);
      expect(res.status).toBe(404);
      expect(((await res.json()) as ErrorBody).error.message.length, path.slice(0, 40)).toBeLessThan(300);
    }
  });

  it("validates bodies: 400 naming the field, 400 for bad JSON, 413 for oversized bodies", async () => {
    const org = await newOrganization();
    const bad = await admin("POST", `/admin/v1/organizations/${org.id}/api-keys`, { name: "", rateLimitPerMinute: 0 });
    expect(bad.status).toBe(400);
    const issues = ((await bad.json()) as ErrorBody).error.issues!.map((i) => i.path);
    expect(issues).toEqual(expect.arrayContaining(["name", "rateLimitPerMinute"]));
    expect(await code(await admin("POST", "/admin/v1/organizations", "{not json"))).toBe("invalid_json");
    expect((await admin("POST", "/admin/v1/organizations", { name: "x".repeat(1024 * 1024) })).status).toBe(413);
  });
});

describe("admin API: credits", () => {
  it("grants credits, turning metering on, and lists the ledger newest first", async () => {
    const org = await newOrganization();
    const granted = await admin("POST", `/admin/v1/organizations/${org.id}/credits`, { amount: 500, note: "welcome" });
    expect(granted.status).toBe(201);
    const grantedCredits = ((await granted.json()) as { credits: Record<string, unknown> }).credits;
    expect(grantedCredits).toMatchObject({ balance: 500, metered: true });
    // The same credits as the organization's view shows: no ledger, and no cursor into one.
    expect(Object.keys(grantedCredits).sort()).toEqual(["available", "balance", "metered", "organizationId", "reserved"]);
    await admin("POST", `/admin/v1/organizations/${org.id}/credits`, { amount: -200, note: "correction" });
    const summary = (await (await admin("GET", `/admin/v1/organizations/${org.id}/credits`)).json()) as {
      balance: number;
      available: number;
      ledger: Array<{ kind: string; amount: number; balanceAfter: number; note: string }>;
    };
    expect(summary.balance).toBe(300);
    expect(summary.available).toBe(300);
    expect(summary.ledger.map((e) => [e.kind, e.amount, e.balanceAfter, e.note])).toEqual([
      ["grant", -200, 300, "correction"],
      ["grant", 500, 500, "welcome"],
    ]);
  });

  it("refuses a zero or fractional amount and an out-of-range limit", async () => {
    const org = await newOrganization();
    expect((await admin("POST", `/admin/v1/organizations/${org.id}/credits`, { amount: 0 })).status).toBe(400);
    expect((await admin("POST", `/admin/v1/organizations/${org.id}/credits`, { amount: 1.5 })).status).toBe(400);
    for (const limit of ["0", "501", "0x10", "1e2", "%2010", "10.0", "", "16&limit=17"])
      expect((await admin("GET", `/admin/v1/organizations/${org.id}/credits?limit=${limit}`)).status, limit).toBe(400);
    expect((await admin("GET", `/admin/v1/organizations/${org.id}/credits?limit=16`)).status).toBe(200);
  });

  it("the whole ledger can be read, a page at a time: `next` until null, every entry once, newest first", async () => {
    const org = await newOrganization();
    // Seven entries, two of them at the very same time (ties are ordered by id).
    for (let n = 1; n <= 5; n++) await admin("POST", `/admin/v1/organizations/${org.id}/credits`, { amount: n, note: `g${n}` });
    const at = "2026-01-01T00:00:00.000Z";
    for (const id of ["tie-a", "tie-b"]) {
      await env.DB.prepare(
        "INSERT INTO credit_ledger (id, organization_id, kind, amount, balance_after, note, created_at) VALUES (?, ?, 'grant', 0, 0, ?, ?)",
      )
        .bind(id, org.id, id, at)
        .run();
    }
    type Page = { ledger: Array<{ note: string }>; next: string | null };
    const pages: Page[] = [];
    let before: string | null = null;
    do {
      const res = await admin("GET", `/admin/v1/organizations/${org.id}/credits?limit=3${before ? `&before=${before}` : ""}`);
      expect(res.status).toBe(200);
      const page = (await res.json()) as Page;
      pages.push(page);
      before = page.next;
    } while (before && pages.length < 10);
    expect(pages.map((p) => p.ledger.length)).toEqual([3, 3, 1]);
    expect(pages.flatMap((p) => p.ledger.map((e) => e.note))).toEqual(["g5", "g4", "g3", "g2", "g1", "tie-b", "tie-a"]);
    expect(pages.at(-1)!.next).toBeNull();
    for (const bad of ["not_a_cursor", "bm90IGpzb24", "%2F%2F", "x".repeat(2000)]) {
      const res = await admin("GET", `/admin/v1/organizations/${org.id}/credits?before=${bad}`);
      expect([res.status, await code(res)], bad).toEqual([400, "invalid_request"]);
    }
    expect((await admin("GET", `/admin/v1/organizations/${org.id}/credits?after=x`)).status).toBe(400);
  });
});

describe("admin API: the organizations list, a page at a time", () => {
  type Page = { organizations: Array<{ id: string; createdAt: string }>; next: string | null };

  it("`next` until null reads every organization once, newest first, ties by id", async () => {
    const made = [(await newOrganization("Paged one")).id, (await newOrganization("Paged two")).id];
    // Three at the very same time, newer than everything else (ties are ordered by id).
    const at = "2999-01-01T00:00:00.000Z";
    const tied = ["org_tie_c", "org_tie_a", "org_tie_b"].map((id) => `${id}_${crypto.randomUUID().slice(0, 8)}`);
    for (const id of tied)
      await env.DB.prepare("INSERT INTO organizations (id, name, created_at, updated_at) VALUES (?, 'Tied', ?, ?)").bind(id, at, at).run();
    const total = (await env.DB.prepare("SELECT count(*) AS n FROM organizations").first<{ n: number }>())!.n;
    const pages: Page[] = [];
    let before: string | null = null;
    do {
      const res = await admin("GET", `/admin/v1/organizations?limit=2${before ? `&before=${before}` : ""}`);
      expect(res.status).toBe(200);
      const page = (await res.json()) as Page;
      pages.push(page);
      before = page.next;
    } while (before && pages.length < 1000);
    const seen = pages.flatMap((p) => p.organizations);
    expect(seen).toHaveLength(total);
    expect(new Set(seen.map((o) => o.id)).size).toBe(total);
    expect(pages.slice(0, -1).every((p) => p.organizations.length === 2)).toBe(true);
    expect(pages.at(-1)!.next).toBeNull();
    const order = seen.map((o) => `${o.createdAt} ${o.id}`);
    expect(order).toEqual([...order].sort().reverse());
    expect(seen.slice(0, 3).map((o) => o.id)).toEqual([...tied].sort().reverse());
    for (const id of made) expect(seen.some((o) => o.id === id)).toBe(true);
  });

  it("answers one page by default and refuses bad paging parameters with 400", async () => {
    const first = (await (await admin("GET", "/admin/v1/organizations")).json()) as Page;
    expect(first.organizations.length).toBeLessThanOrEqual(100);
    expect(first).toHaveProperty("next");
    for (const query of [
      "limit=0",
      "limit=501",
      "limit=1e2",
      "limit=2&limit=3",
      "before=not_a_cursor",
      "before=bm90IGpzb24",
      "before=%2F%2F",
      `before=${"x".repeat(2000)}`,
      "after=x",
      "page=2",
    ]) {
      const res = await admin("GET", `/admin/v1/organizations?${query}`);
      expect([res.status, await code(res)], query).toEqual([400, "invalid_request"]);
    }
  });
});

describe("admin API: the API keys list, a page at a time", () => {
  it("`next` until null reads every key of the organization once (revoked ones too), newest first, ties by id; no other organization's", async () => {
    const org = await newOrganization("Many keys");
    const other = await newOrganization("Other keys");
    await createKey(other.id);
    const made: string[] = [];
    for (let i = 0; i < 5; i++) made.push((await createKey(org.id)).keyId);
    // Two at the very same time, newer than the rest (ties are ordered by id), and one revoked.
    const at = "2999-01-01T00:00:00.000Z";
    for (const id of made.slice(0, 2)) await env.DB.prepare("UPDATE api_keys SET created_at = ? WHERE id = ?").bind(at, id).run();
    expect((await admin("DELETE", `/admin/v1/organizations/${org.id}/api-keys/${made[4]}`)).status).toBe(200);

    const { items, pages } = await readAllPages<{ id: string; createdAt: string; revokedAt: string | null }>(
      `/admin/v1/organizations/${org.id}/api-keys`,
      "apiKeys",
      2,
    );
    expect(items.map((k) => k.id).sort()).toEqual([...made].sort());
    expect(pages.map((p) => p.items.length)).toEqual([2, 2, 1]);
    expect(pages.at(-1)!.next).toBeNull();
    const order = items.map((k) => `${k.createdAt} ${k.id}`);
    expect(order).toEqual([...order].sort().reverse());
    expect(items.slice(0, 2).map((k) => k.id)).toEqual(made.slice(0, 2).sort().reverse());
    expect(items.find((k) => k.id === made[4])!.revokedAt).toBeTypeOf("string");
  });

  it("refuses bad paging parameters with 400", async () => {
    const org = await newOrganization();
    for (const query of ["limit=0", "limit=501", "limit=1e2", "limit=2&limit=3", "before=not_a_cursor", "before=%2F%2F", "page=2"]) {
      const res = await admin("GET", `/admin/v1/organizations/${org.id}/api-keys?${query}`);
      expect([res.status, await code(res)], query).toEqual([400, "invalid_request"]);
    }
  });
});

describe("admin API: credits (security: no overdraw)", () => {
  type Summary = {
    balance: number | null;
    reserved: number;
    available: number | null;
    ledger: Array<{ amount: number; balanceAfter: number }>;
  };
  const credits = (orgId: string, body: Record<string, unknown>) => admin("POST", `/admin/v1/organizations/${orgId}/credits`, body);
  const summary = async (orgId: string) => (await (await admin("GET", `/admin/v1/organizations/${orgId}/credits`)).json()) as Summary;
  const holdCredits = (orgId: string, amount: number) =>
    env.DB.prepare("UPDATE organizations SET credits_reserved = ? WHERE id = ?").bind(amount, orgId).run();

  it("a removal larger than the balance → 409 insufficient_balance; nothing changes, no ledger row", async () => {
    const org = await newOrganization();
    await credits(org.id, { amount: 100 });
    const res = await credits(org.id, { amount: -1_000 });
    expect(res.status).toBe(409);
    const body = (await res.json()) as ErrorBody;
    expect(body.error.code).toBe("insufficient_balance");
    expect(body.error.message).toMatch(/100 available/);
    expect(body.error.message).toContain("allowDebt");
    const after = await summary(org.id);
    expect([after.balance, after.available, after.ledger.length]).toEqual([100, 100, 1]);
  });

  it("a balance stays within ±MAX_CREDIT_BALANCE (10^15, where JSON numbers still read back exactly): a grant past it → 409 credit_balance_limit, nothing changes", async () => {
    const org = await newOrganization();
    await credits(org.id, { amount: 1 });
    const setBalance = (balance: number) =>
      env.DB.prepare("UPDATE organizations SET credit_balance = ? WHERE id = ?").bind(balance, org.id).run();
    await setBalance(MAX_CREDIT_BALANCE - 5);
    expect((await credits(org.id, { amount: 5 })).status).toBe(201);
    const past = await credits(org.id, { amount: 1 });
    expect(past.status).toBe(409);
    const body = (await past.json()) as ErrorBody;
    expect(body.error.code).toBe("credit_balance_limit");
    expect(body.error.issues?.[0]?.path).toBe("amount");
    expect((await summary(org.id)).balance).toBe(MAX_CREDIT_BALANCE);
    // The debt side too: a removal with allowDebt may not take it below -10^15.
    await setBalance(-MAX_CREDIT_BALANCE + 3);
    expect((await credits(org.id, { amount: -4, allowDebt: true })).status).toBe(409);
    expect((await credits(org.id, { amount: -3, allowDebt: true })).status).toBe(201);
    const after = await summary(org.id);
    expect([after.balance, after.ledger.length]).toEqual([-MAX_CREDIT_BALANCE, 3]);
  });

  it("credits held by runs in flight cannot be removed: the limit is balance - reserved", async () => {
    const org = await newOrganization();
    await credits(org.id, { amount: 1_000 });
    await holdCredits(org.id, 800);
    expect((await credits(org.id, { amount: -201 })).status).toBe(409);
    expect((await credits(org.id, { amount: -200 })).status).toBe(201);
    const after = await summary(org.id);
    expect([after.balance, after.reserved, after.available]).toEqual([800, 800, 0]);
  });

  it("an unmetered organization has nothing to remove, allowDebt or not: 409 saying it is not metered, and it stays unmetered", async () => {
    const org = await newOrganization();
    for (const body of [{ amount: -1 }, { amount: -10, allowDebt: true }]) {
      const res = await credits(org.id, body);
      expect(res.status, JSON.stringify(body)).toBe(409);
      const error = ((await res.json()) as ErrorBody).error;
      expect(error.code).toBe("insufficient_balance");
      expect(error.message).toContain("not metered");
    }
    const after = await summary(org.id);
    expect([after.balance, after.ledger.length]).toEqual([null, 0]);
  });

  it("allowDebt: true lets the balance go below zero, and available stays balance - reserved", async () => {
    const org = await newOrganization();
    await credits(org.id, { amount: 100 });
    await holdCredits(org.id, 50);
    const res = await credits(org.id, { amount: -1_000, allowDebt: true, note: "chargeback" });
    expect(res.status).toBe(201);
    const { credits: shown } = (await res.json()) as { credits: Summary };
    expect([shown.balance, shown.reserved, shown.available]).toEqual([-900, 50, -950]);
    const after = await summary(org.id);
    expect(after.available).toBe(after.balance! - after.reserved);
    const view = (await (await admin("GET", `/admin/v1/organizations/${org.id}`)).json()) as { credits: Summary };
    expect(view.credits.available).toBe(view.credits.balance! - view.credits.reserved);
    expect((await credits(org.id, { amount: -1, allowDebt: "yes" })).status).toBe(400);
  });

  it("a grant retried with its Idempotency-Key applies once (also when the retries race); the key with another amount is 422", async () => {
    const org = await newOrganization();
    const grant = (body: Record<string, unknown>, key: string) =>
      call(`/admin/v1/organizations/${org.id}/credits`, {
        method: "POST",
        headers: { authorization: `Bearer ${TEST_ADMIN_KEY}`, "content-type": "application/json", "idempotency-key": key },
        body: JSON.stringify(body),
      });
    const first = await grant({ amount: 100_000, note: "invoice 42" }, "grant-invoice-42");
    expect(first.status).toBe(201);
    const { entry } = (await first.json()) as { entry: { id: string } };
    // The answer was lost; the operator's script sends it again, twice at once.
    const retries = await Promise.all([1, 2].map(() => grant({ amount: 100_000, note: "invoice 42" }, "grant-invoice-42")));
    for (const retry of retries) {
      expect(retry.status).toBe(200);
      expect(retry.headers.get("idempotent-replayed")).toBe("true");
      expect(((await retry.json()) as { entry: { id: string } }).entry.id).toBe(entry.id);
    }
    const after = await summary(org.id);
    expect([after.balance, after.ledger.length]).toEqual([100_000, 1]);
    const reused = await grant({ amount: 5, note: "invoice 42" }, "grant-invoice-42");
    expect([reused.status, await code(reused)]).toEqual([422, "idempotency_key_reused"]);
    expect((await grant({ amount: 5 }, "")).status).toBe(400);
    // Another organization's grant under the same key is its own.
    const other = await newOrganization();
    const elsewhere = await call(`/admin/v1/organizations/${other.id}/credits`, {
      method: "POST",
      headers: { authorization: `Bearer ${TEST_ADMIN_KEY}`, "content-type": "application/json", "idempotency-key": "grant-invoice-42" },
      body: JSON.stringify({ amount: 7, note: "x" }),
    });
    expect(elsewhere.status).toBe(201);
    expect((await summary(org.id)).balance).toBe(100_000);
  });

  it("concurrent removals cannot overdraw together", async () => {
    const org = await newOrganization();
    await credits(org.id, { amount: 100 });
    const results = await Promise.all(Array.from({ length: 5 }, () => credits(org.id, { amount: -30 })));
    expect(results.map((r) => r.status).sort()).toEqual([201, 201, 201, 409, 409]);
    const after = await summary(org.id);
    expect([after.balance, after.available, after.ledger.length]).toEqual([10, 10, 4]);
  });
});

describe("admin API: prompt workflows", () => {
  const definition = {
    name: "Story",
    template: "Write a story about {{ topic }} for {{audience}}; mention {{topic}} twice.",
    model: "local/writer",
  };

  it("the list, a page at a time: `next` until null reads every prompt workflow of the organization once, newest first; bad paging is 400", async () => {
    const org = await newOrganization("Many workflows");
    const other = await newOrganization("Other workflows");
    expect((await admin("POST", `/admin/v1/organizations/${other.id}/workflows`, definition)).status).toBe(201);
    const made: string[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await admin("POST", `/admin/v1/organizations/${org.id}/workflows`, { ...definition, name: `Story ${i}` });
      made.push(((await res.json()) as { id: string }).id);
    }
    expect((await admin("POST", `/admin/v1/workflows/${made[1]}/publish`)).status).toBe(200);
    const { items, pages } = await readAllPages<{ id: string; createdAt: string; published: boolean }>(
      `/admin/v1/organizations/${org.id}/workflows`,
      "workflows",
      2,
    );
    expect(items.map((w) => w.id).sort()).toEqual([...made].sort());
    expect(pages.map((p) => p.items.length)).toEqual([2, 2, 1]);
    const order = items.map((w) => `${w.createdAt} ${w.id}`);
    expect(order).toEqual([...order].sort().reverse());
    for (const query of ["limit=0", "limit=501", "before=not_a_cursor", "page=2"]) {
      const res = await admin("GET", `/admin/v1/organizations/${org.id}/workflows?${query}`);
      expect([res.status, await code(res)], query).toEqual([400, "invalid_request"]);
    }
  });

  it("creates an unpublished workflow with its variables, publishes and unpublishes it", async () => {
    const org = await newOrganization();
    const res = await admin("POST", `/admin/v1/organizations/${org.id}/workflows`, definition);
    expect(res.status).toBe(201);
    const wf = (await res.json()) as { id: string; variables: string[]; published: boolean; webSearch: boolean; maxOutputTokens: number };
    expect(wf.id).toMatch(/^wf_[a-z0-9]{12}$/);
    expect(wf.variables).toEqual(["topic", "audience"]);
    expect(wf).toMatchObject({ published: false, webSearch: false, maxOutputTokens: 1024 });

    expect(((await (await admin("POST", `/admin/v1/workflows/${wf.id}/publish`)).json()) as { published: boolean }).published).toBe(true);
    expect(((await (await admin("POST", `/admin/v1/workflows/${wf.id}/unpublish`)).json()) as { published: boolean }).published).toBe(
      false,
    );
    const row = await env.DB.prepare("SELECT kind, organization_id, published FROM workflows WHERE id = ?").bind(wf.id).first();
    expect(row).toEqual({ kind: "prompt", organization_id: org.id, published: 0 });
  });

  it("updates the template and re-reads its variables; PATCH with nothing is a 400", async () => {
    const org = await newOrganization();
    const wf = (await (await admin("POST", `/admin/v1/organizations/${org.id}/workflows`, definition)).json()) as { id: string };
    const updated = await admin("PATCH", `/admin/v1/workflows/${wf.id}`, { template: "Summarize {{text}}", webSearch: true });
    expect((await updated.json()) as { variables: string[]; webSearch: boolean }).toMatchObject({ variables: ["text"], webSearch: true });
    expect((await admin("PATCH", `/admin/v1/workflows/${wf.id}`, {})).status).toBe(400);
  });

  it("two edits at once (the model, the template) both land: neither puts the other's field back", async () => {
    const org = await newOrganization();
    const wf = (await (await admin("POST", `/admin/v1/organizations/${org.id}/workflows`, definition)).json()) as { id: string };
    // Both edits read the workflow before either writes.
    const undo = interceptD1InPlace(env.DB, (c) =>
      c.kind === "statement" && /^update "workflows"/i.test(c.sql) ? new Promise((r) => setTimeout(r, 200)) : undefined,
    );
    try {
      const answers = await Promise.all([
        admin("PATCH", `/admin/v1/workflows/${wf.id}`, { model: "local/thinker" }),
        admin("PATCH", `/admin/v1/workflows/${wf.id}`, { template: "Summarize {{text}}" }),
      ]);
      expect(answers.map((r) => r.status)).toEqual([200, 200]);
    } finally {
      undo();
    }
    const stored = (await (await admin("GET", `/admin/v1/workflows/${wf.id}`)).json()) as {
      model: string;
      template: string;
      variables: string[];
    };
    expect(stored).toMatchObject({ model: "local/thinker", template: "Summarize {{text}}", variables: ["text"] });
  });

  it("rejects bad placeholders, unknown providers and taken names", async () => {
    const org = await newOrganization();
    const badTemplate = await admin("POST", `/admin/v1/organizations/${org.id}/workflows`, {
      ...definition,
      template: "Hi {{ 1st name }}",
    });
    expect(badTemplate.status).toBe(400);
    expect(((await badTemplate.json()) as ErrorBody).error.issues![0]!.path).toBe("template");
    const badModel = await admin("POST", `/admin/v1/organizations/${org.id}/workflows`, { ...definition, model: "gpt-4o" });
    expect(((await badModel.json()) as ErrorBody).error.issues![0]!.path).toBe("model");
    expect((await admin("POST", `/admin/v1/organizations/${org.id}/workflows`, definition)).status).toBe(201);
    const taken = await admin("POST", `/admin/v1/organizations/${org.id}/workflows`, definition);
    expect(taken.status).toBe(409);
    expect(await code(taken)).toBe("workflow_name_taken");
  });

  it("security: a template built to make placeholder matching backtrack is read in one pass", async () => {
    const org = await newOrganization();
    // `{{`, then spaces to the schema's 100,000-character limit, never closed: with a backtracking
    // placeholder pattern this request ran for days; now it is an ordinary template without variables.
    const hostile = `{{${" ".repeat(99_990)}x`;
    const res = await admin("POST", `/admin/v1/organizations/${org.id}/workflows`, { ...definition, name: "Hostile", template: hostile });
    expect(res.status).toBe(201);
    expect(((await res.json()) as { variables: string[] }).variables).toEqual([]);
    const spaced = await admin("POST", `/admin/v1/organizations/${org.id}/workflows`, {
      ...definition,
      name: "Spaced",
      template: `{{${" ".repeat(5_000)}topic${"\t".repeat(5_000)}}} and {{ {{audience}} }}`,
    });
    expect(((await spaced.json()) as { variables: string[] }).variables).toEqual(["topic", "audience"]);
  });

  it("a template as long as the schema allows is taken however the client encodes it: CJK as UTF-8, or every character \\u-escaped (Python's json.dumps), on create and edit", async () => {
    const org = await newOrganization();
    // 100,000 UTF-16 units, the schema's limit: 300 KB as UTF-8, 600 KB with every unit written \uXXXX.
    const longest = `${"東".repeat(MAX_TEMPLATE_CHARS - 7)}{{ x }}`;
    const asciiEscaped = (text: string) => text.replace(/[\u0080-\uffff]/g, (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, "0")}`);
    const utf8 = await admin("POST", `/admin/v1/organizations/${org.id}/workflows`, { ...definition, name: "Longest", template: longest });
    expect(utf8.status).toBe(201);
    const { id } = (await utf8.json()) as { id: string };
    const escaped = asciiEscaped(JSON.stringify({ ...definition, name: "Longest escaped", template: longest }));
    expect(escaped.length).toBeGreaterThan(600_000);
    const created = await admin("POST", `/admin/v1/organizations/${org.id}/workflows`, escaped);
    expect(created.status).toBe(201);
    expect((await created.json()) as { template: string; variables: string[] }).toMatchObject({ template: longest, variables: ["x"] });
    const edited = await admin(
      "PATCH",
      `/admin/v1/workflows/${id}`,
      asciiEscaped(JSON.stringify({ template: `${longest.slice(0, -7)}{{ y }}` })),
    );
    expect([edited.status, ((await edited.json()) as { variables: string[] }).variables]).toEqual([200, ["y"]]);
    // One unit more is the schema's 400 naming the template, not a 413.
    const tooLong = await admin(
      "POST",
      `/admin/v1/organizations/${org.id}/workflows`,
      asciiEscaped(JSON.stringify({ ...definition, template: `東${longest}` })),
    );
    expect([tooLong.status, ((await tooLong.json()) as ErrorBody).error.issues?.map((i) => i.path)]).toEqual([400, ["template"]]);
  });

  it("security: a template of thousands of bad placeholders, or one huge one, gets an answer of a few KB", async () => {
    const org = await newOrganization();
    for (const template of ["{{1}}".repeat(19_000), `{{ ${"x-".repeat(45_000)} }}`]) {
      const res = await admin("POST", `/admin/v1/organizations/${org.id}/workflows`, { ...definition, name: "Bad", template });
      expect(res.status).toBe(400);
      const text = await res.text();
      expect(text.length).toBeLessThan(16 * 1024);
      expect((JSON.parse(text) as ErrorBody).error.code).toBe("invalid_request");
    }
  });

  it("security: a name with control characters (terminal escapes, NUL), a bidi control (Trojan Source), an invisible character, or of invisible characters only, is 400 invalid_request naming it, on create and edit", async () => {
    const org = await newOrganization();
    const created = await admin("POST", `/admin/v1/organizations/${org.id}/workflows`, definition);
    const { id } = (await created.json()) as { id: string };
    for (const [name, codePoint] of [
      ["\u001b]0;pwned\u0007\u001b[2JStory", "U+001B"],
      ["St\u0000ory", "U+0000"],
      ["line\nbreak", "U+000A"],
      ["\u200b", "U+200B"],
      ["\u200b\u2060 ", "U+200B"],
      ["Invoice\u202Efdp.exe", "U+202E"],
      ["St\u2066ory\u2069", "U+2066"],
      ["St\u200Bory", "U+200B"],
      ["St\u200Eory", "U+200E"],
    ] as const) {
      for (const [method, path, body] of [
        ["POST", `/admin/v1/organizations/${org.id}/workflows`, { ...definition, name }],
        ["PATCH", `/admin/v1/workflows/${id}`, { name }],
      ] as const) {
        const res = await admin(method, path, body);
        expect(res.status, `${method} ${JSON.stringify(name)}`).toBe(400);
        const { error } = (await res.json()) as ErrorBody;
        expect(error.code).toBe("invalid_request");
        expect(error.issues).toEqual([{ path: "name", message: expect.stringContaining(codePoint) }]);
      }
    }
    expect((await admin("PATCH", `/admin/v1/workflows/${id}`, { name: "Zoë & Co. — 東京 🚀" })).status).toBe(200);
    for (const name of ["__proto__", "constructor"]) {
      const res = await admin("POST", `/admin/v1/organizations/${org.id}/workflows`, { ...definition, name });
      expect(res.status, name).toBe(201);
      expect(((await res.json()) as { name: string }).name).toBe(name);
    }
  });

  it("security: a description, shown to tenants and printed in terminals, holds no terminal escape, other control or bidi override (400 naming it, on create and edit); line breaks, tabs, bidi marks and right-to-left prose are kept", async () => {
    const org = await newOrganization();
    const created = await admin("POST", `/admin/v1/organizations/${org.id}/workflows`, definition);
    const { id } = (await created.json()) as { id: string };
    for (const [description, codePoint] of [
      ["Summaries\u001b]0;pwned\u0007", "U+001B"],
      ["Sum\u0000maries", "U+0000"],
      ["Summaries \u202Etxt.exe", "U+202E"],
      ["Summaries \u2067x\u2069", "U+2067"],
    ] as const) {
      for (const [method, path, body] of [
        ["POST", `/admin/v1/organizations/${org.id}/workflows`, { ...definition, name: `d-${crypto.randomUUID()}`, description }],
        ["PATCH", `/admin/v1/workflows/${id}`, { description }],
      ] as const) {
        const res = await admin(method, path, body);
        expect(res.status, `${method} ${JSON.stringify(description)}`).toBe(400);
        const { error } = (await res.json()) as ErrorBody;
        expect(error.code).toBe("invalid_request");
        expect(error.issues).toEqual([{ path: "description", message: expect.stringContaining(codePoint) }]);
      }
    }
    const prose = "Summarizes a page.\r\n\tIn Hebrew: \u05E1\u05D9\u05DB\u05D5\u05DD\u200F (summary)";
    const edited = await admin("PATCH", `/admin/v1/workflows/${id}`, { description: prose });
    expect(edited.status).toBe(200);
    expect(((await edited.json()) as { description: string }).description).toBe(prose);
  });

  it("security: an NFC name and its NFD spelling are one name: the second create, or an edit to it, is 409 workflow_name_taken", async () => {
    const org = await newOrganization();
    const first = await admin("POST", `/admin/v1/organizations/${org.id}/workflows`, { ...definition, name: "Caf\u00e9 menu" });
    expect(first.status).toBe(201);
    const twin = await admin("POST", `/admin/v1/organizations/${org.id}/workflows`, { ...definition, name: "Cafe\u0301 menu" });
    expect(twin.status).toBe(409);
    expect(await code(twin)).toBe("workflow_name_taken");
    const other = (await (await admin("POST", `/admin/v1/organizations/${org.id}/workflows`, { ...definition, name: "Other" })).json()) as {
      id: string;
    };
    const renamed = await admin("PATCH", `/admin/v1/workflows/${other.id}`, { name: "Cafe\u0301 menu" });
    expect(renamed.status).toBe(409);
    expect(await code(renamed)).toBe("workflow_name_taken");
    // An NFD name is stored as NFC.
    const nfd = await admin("POST", `/admin/v1/organizations/${org.id}/workflows`, { ...definition, name: "Zoe\u0308" });
    expect(((await nfd.json()) as { name: string }).name).toBe("Zo\u00eb");
  });

  it("a name stored before names were checked (NFD, or with a bidi control) stays as it is: readable, listed, and its other fields editable; a new name must pass", async () => {
    const org = await newOrganization();
    const { id } = (await (await admin("POST", `/admin/v1/organizations/${org.id}/workflows`, definition)).json()) as { id: string };
    const legacy = "Cafe\u0301 \u202Eyrots";
    await env.DB.prepare("UPDATE workflows SET name = ? WHERE id = ?").bind(legacy, id).run();
    expect(((await (await admin("GET", `/admin/v1/workflows/${id}`)).json()) as { name: string }).name).toBe(legacy);
    const edited = await admin("PATCH", `/admin/v1/workflows/${id}`, { description: "still here" });
    expect(edited.status).toBe(200);
    expect((await edited.json()) as { name: string; description: string }).toMatchObject({ name: legacy, description: "still here" });
    const listed = (await (await admin("GET", `/admin/v1/organizations/${org.id}/workflows`)).json()) as {
      workflows: Array<{ name: string }>;
    };
    expect(listed.workflows.map((w) => w.name)).toEqual([legacy]);
    expect((await admin("PATCH", `/admin/v1/workflows/${id}`, { name: legacy })).status).toBe(400);
    expect(
      ((await (await admin("PATCH", `/admin/v1/workflows/${id}`, { name: "Cafe\u0301 story" })).json()) as { name: string }).name,
    ).toBe("Caf\u00e9 story");
  });

  it("security: a 404 for a very long workflow id quotes it cut short, not whole (read, edit, publish, unpublish)", async () => {
    const long = `/admin/v1/workflows/wf_${"c".repeat(8000)}`;
    for (const [method, path, body] of [
      ["GET", long, undefined],
      ["PATCH", long, { description: "d" }],
      ["POST", `${long}/publish`, undefined],
      ["POST", `${long}/unpublish`, undefined],
    ] as const) {
      const res = await admin(method, path, body);
      expect(res.status, `${method} ${path.slice(-12)}`).toBe(404);
      expect(((await res.json()) as ErrorBody).error.message.length, `${method} ${path.slice(-12)}`).toBeLessThan(300);
    }
  });

  it("answers 404 for unknown and malformed workflow ids", async () => {
    for (const id of ["wf_doesnotexist", "../../etc/passwd", "wf_%E2%98%83", "w".repeat(500)]) {
      const res = await admin("GET", `/admin/v1/workflows/${id}`);
      expect(res.status).toBe(404);
    }
  });
});
