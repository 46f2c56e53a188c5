/**
 * Webhook signing secrets at rest: D1 holds only `enc1:` ciphertexts (AES-256-GCM, bound to the
 * organization and endpoint ids), deliveries still verify with the plain secret, a ciphertext
 * moved to another row or sealed under an unknown key is a logged delivery error (nothing sent,
 * nothing else changed), and a legacy plain row (or one under an older key) signs with the same
 * secret and is sealed under the newest key by that delivery, never over a rotation made meanwhile.
 */
import { env } from "cloudflare:workers";
import { Webhook } from "standardwebhooks";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { rotateWebhookSecret } from "../../src/db/webhooks.ts";
import { runStream } from "../../src/run-stream-client.ts";
import { isSealed, openSecret, sealSecret, webhookSecretAad } from "../../src/shared/secret-box.ts";
import { generateWebhookSecret } from "../../src/webhooks/signing.ts";
import { admin, seedCatalog, seedOrganization } from "./helpers.ts";
import { closeEvent, createRunningRun, finishedEvent, historyEvent, push } from "./stream-helpers.ts";
import { hookUrl, queuedMessage, received, register, until } from "./webhook-helpers.ts";

const base = (org: string) => `/admin/v1/organizations/${org}/webhooks`;

const storedSecret = async (id: string) =>
  (await env.DB.prepare("SELECT secret FROM webhook_endpoints WHERE id = ?").bind(id).first<{ secret: string }>())!.secret;
const setStoredSecret = (id: string, secret: string) =>
  env.DB.prepare("UPDATE webhook_endpoints SET secret = ? WHERE id = ?").bind(secret, id).run();

async function finishRun(organizationId: string) {
  const { workflowId, runId } = await createRunningRun(organizationId);
  await push(workflowId, [historyEvent(runId, 1), closeEvent(runId, 2), finishedEvent(runId, "completed")]);
  return { workflowId, runId };
}

/** `db` (env.DB) with `around` run on each statement whose SQL contains `match`, instead of the statement's own call. */
function dbWith(match: string, around: (call: () => Promise<unknown>) => Promise<unknown>, db: D1Database = env.DB): D1Database {
  return {
    prepare(query: string) {
      const statement = db.prepare(query);
      if (!query.includes(match)) return statement;
      return {
        bind: (...values: unknown[]) => {
          const bound = statement.bind(...values);
          return { first: () => around(() => bound.first()), run: () => around(() => bound.run()) };
        },
      };
    },
  } as unknown as D1Database;
}

async function deliveries(organizationId: string, id: string) {
  const res = await admin("GET", `${base(organizationId)}/${id}/deliveries`);
  return ((await res.json()) as { deliveries: Array<{ status: string; error: string | null; responseStatus: number | null }> }).deliveries;
}

describe("webhook secrets at rest: happy path", { timeout: 40_000 }, () => {
  beforeAll(async () => {
    await seedCatalog();
  });

  it("a delivery signed from the encrypted row verifies with the plain secret the API showed", async () => {
    const org = await seedOrganization();
    const name = `sealed-${crypto.randomUUID()}`;
    const endpoint = await register(org.organizationId, hookUrl(name));
    expect(isSealed(await storedSecret(endpoint.id))).toBe(true);
    await finishRun(org.organizationId);
    const got = await until(async () => {
      const r = await received(name);
      return r.length >= 1 ? r : null;
    });
    expect((new Webhook(endpoint.secret).verify(got[0]!.body, got[0]!.headers) as { type: string }).type).toBe("run.completed");
  });

  it("a legacy plain row signs with the same secret, and that first delivery seals it in place under the newest key", async () => {
    const org = await seedOrganization();
    const name = `legacy-${crypto.randomUUID()}`;
    const endpoint = await register(org.organizationId, hookUrl(name));
    // As rows written before encryption look: the plain whsec_ value.
    const plain = `whsec_${btoa("legacy-plain-secret-24b!")}`;
    await setStoredSecret(endpoint.id, plain);
    await finishRun(org.organizationId);
    const got = await until(async () => {
      const r = await received(name);
      return r.length >= 1 ? r : null;
    });
    // The receiver verifies with the secret it already has.
    expect((new Webhook(plain).verify(got[0]!.body, got[0]!.headers) as { type: string }).type).toBe("run.completed");
    const stored = await until(async () => {
      const s = await storedSecret(endpoint.id);
      return isSealed(s) ? s : null;
    });
    expect(stored).toMatch(/^enc1:edge2:/);
    expect(stored).not.toContain(plain);
    expect(await openSecret(env.WEBHOOK_SECRET_KEYS, stored, webhookSecretAad(org.organizationId, endpoint.id))).toBe(plain);

    // Its next write (rotation) stores the new secret sealed, as for any row.
    const rotated = (await (await admin("POST", `${base(org.organizationId)}/${endpoint.id}/rotate-secret`)).json()) as { secret: string };
    const after = await storedSecret(endpoint.id);
    expect(isSealed(after)).toBe(true);
    expect(await openSecret(env.WEBHOOK_SECRET_KEYS, after, webhookSecretAad(org.organizationId, endpoint.id))).toBe(rotated.secret);
  });

  it("a value sealed under the older listed key (edge1) still signs, and that delivery re-seals it under edge2, same secret", async () => {
    const org = await seedOrganization();
    const name = `old-key-${crypto.randomUUID()}`;
    const endpoint = await register(org.organizationId, hookUrl(name));
    const aad = webhookSecretAad(org.organizationId, endpoint.id);
    const oldKeyOnly = env.WEBHOOK_SECRET_KEYS.split(",").find((k) => k.startsWith("edge1:"))!;
    await setStoredSecret(endpoint.id, await sealSecret(oldKeyOnly, endpoint.secret, aad));
    expect(await storedSecret(endpoint.id)).toMatch(/^enc1:edge1:/);
    await finishRun(org.organizationId);
    const got = await until(async () => {
      const r = await received(name);
      return r.length >= 1 ? r : null;
    });
    new Webhook(endpoint.secret).verify(got[0]!.body, got[0]!.headers);
    const stored = await until(async () => {
      const s = await storedSecret(endpoint.id);
      return s.startsWith("enc1:edge2:") ? s : null;
    });
    // Readable without edge1 now: the old key could be retired.
    const newKeyOnly = env.WEBHOOK_SECRET_KEYS.split(",").find((k) => k.startsWith("edge2:"))!;
    expect(await openSecret(newKeyOnly, stored, aad)).toBe(endpoint.secret);
  });

  it("a replaced secret still signing, sealed under the older key (edge1), is re-sealed under edge2 by a delivery; one whose overlap ended is dropped", async () => {
    const org = await seedOrganization();
    const name = `old-key-previous-${crypto.randomUUID()}`;
    const endpoint = await register(org.organizationId, hookUrl(name));
    const ended = await register(org.organizationId, hookUrl(`old-key-ended-${crypto.randomUUID()}`));
    const edge1 = env.WEBHOOK_SECRET_KEYS.split(",").find((k) => k.startsWith("edge1:"))!;
    const replaced = generateWebhookSecret();
    const overlapEnds = new Date(Date.now() + 3_600_000).toISOString();
    const setPrevious = async (id: string, expiresAt: string) =>
      env.DB.prepare("UPDATE webhook_endpoints SET previous_secret = ?, previous_secret_expires_at = ? WHERE id = ?")
        .bind(await sealSecret(edge1, replaced, webhookSecretAad(org.organizationId, id)), expiresAt, id)
        .run();
    await setPrevious(endpoint.id, overlapEnds);
    await setPrevious(ended.id, new Date(Date.now() - 1_000).toISOString());
    await finishRun(org.organizationId);
    const got = await until(async () => {
      const r = await received(name);
      return r.length >= 1 ? r : null;
    });
    // Both signatures went out, the replaced secret's too.
    new Webhook(endpoint.secret).verify(got[0]!.body, got[0]!.headers);
    new Webhook(replaced).verify(got[0]!.body, got[0]!.headers);
    const previousOf = (id: string) =>
      env.DB.prepare("SELECT secret, previous_secret, previous_secret_expires_at FROM webhook_endpoints WHERE id = ?")
        .bind(id)
        .first<{ secret: string; previous_secret: string | null; previous_secret_expires_at: string | null }>();
    const row = await until(async () => {
      const r = await previousOf(endpoint.id);
      return r?.previous_secret?.startsWith("enc1:edge2:") ? r : null;
    });
    // Readable without edge1 now, for the rest of its overlap, which is unchanged.
    const edge2 = env.WEBHOOK_SECRET_KEYS.split(",").find((k) => k.startsWith("edge2:"))!;
    expect(await openSecret(edge2, row.previous_secret!, webhookSecretAad(org.organizationId, endpoint.id))).toBe(replaced);
    expect(row.previous_secret_expires_at).toBe(overlapEnds);
    expect(await openSecret(edge2, row.secret, webhookSecretAad(org.organizationId, endpoint.id))).toBe(endpoint.secret);
    // The other endpoint's overlap had ended: its replaced secret, which never signs again, is gone.
    const endedRow = await until(async () => {
      const r = await previousOf(ended.id);
      return r?.previous_secret === null ? r : null;
    });
    expect(endedRow.previous_secret_expires_at).toBeNull();
  });

  it("the write-back failing neither fails nor holds the delivery: a WARN line, the row stays plain, the next delivery seals it", async () => {
    const org = await seedOrganization();
    const name = `writeback-fails-${crypto.randomUUID()}`;
    const endpoint = await register(org.organizationId, hookUrl(name));
    const plain = generateWebhookSecret();
    await setStoredSecret(endpoint.id, plain);
    const first = await queuedMessage(org.organizationId, endpoint.id, "msg_writeback_1");
    const failing = dbWith("UPDATE webhook_endpoints", () => Promise.reject(new Error("D1 is unavailable")));
    const warned = vi.spyOn(console, "warn").mockImplementation(() => undefined);
    try {
      expect(await first.work({ DB: failing })).toEqual([expect.objectContaining({ state: "delivered", attempts: 1 })]);
      const lines = warned.mock.calls.map(([line]) => String(line)).filter((line) => line.includes("not sealed on use"));
      expect(lines.map((line) => JSON.parse(line))).toEqual([
        expect.objectContaining({ level: "warn", endpointId: endpoint.id, error: "D1 is unavailable" }),
      ]);
    } finally {
      warned.mockRestore();
    }
    const got = await received(name);
    expect(got.length).toBe(1);
    new Webhook(plain).verify(got[0]!.body, got[0]!.headers);
    expect(await storedSecret(endpoint.id)).toBe(plain);

    const second = await queuedMessage(org.organizationId, endpoint.id, "msg_writeback_2");
    expect(await second.work({})).toEqual([expect.objectContaining({ state: "delivered" })]);
    const stored = await storedSecret(endpoint.id);
    expect(stored).toMatch(/^enc1:edge2:/);
    expect(await openSecret(env.WEBHOOK_SECRET_KEYS, stored, webhookSecretAad(org.organizationId, endpoint.id))).toBe(plain);
  });
});

describe("webhook secrets at rest: WEBHOOK_SECRET_KEYS missing, legacy plain rows", { timeout: 40_000 }, () => {
  beforeAll(async () => {
    await seedCatalog();
  });

  it("a legacy plain row still delivers on every attempt, and its failed write-back warns once per endpoint, not per attempt", async () => {
    const org = await seedOrganization();
    const nameA = `nokeys-a-${crypto.randomUUID()}`;
    const nameB = `nokeys-b-${crypto.randomUUID()}`;
    const a = await register(org.organizationId, hookUrl(nameA));
    const b = await register(org.organizationId, hookUrl(nameB));
    const plainA = generateWebhookSecret();
    const plainB = generateWebhookSecret();
    await setStoredSecret(a.id, plainA);
    await setStoredSecret(b.id, plainB);
    const noKeys = { WEBHOOK_SECRET_KEYS: "" };
    const warned = vi.spyOn(console, "warn").mockImplementation(() => undefined);
    const warnings = () =>
      warned.mock.calls
        .map(([line]) => String(line))
        .filter((line) => line.includes("not sealed on use"))
        .map((line) => JSON.parse(line) as { endpointId: string; error: string });
    try {
      const first = await queuedMessage(org.organizationId, a.id, "msg_nokeys_1");
      expect(await first.work(noKeys)).toEqual([expect.objectContaining({ state: "delivered", attempts: 1 })]);
      expect(warnings()).toEqual([expect.objectContaining({ endpointId: a.id, error: expect.stringContaining("WEBHOOK_SECRET_KEYS") })]);

      // The same endpoint again (another run's message): delivered, the write-back tried and failed again, no second line.
      const second = await queuedMessage(org.organizationId, a.id, "msg_nokeys_2");
      expect(await second.work(noKeys)).toEqual([expect.objectContaining({ state: "delivered" })]);
      expect(warnings().map((w) => w.endpointId)).toEqual([a.id]);

      // Another endpoint in the same isolate gets its own line.
      const other = await queuedMessage(org.organizationId, b.id, "msg_nokeys_3");
      expect(await other.work(noKeys)).toEqual([expect.objectContaining({ state: "delivered" })]);
      expect(warnings().map((w) => w.endpointId)).toEqual([a.id, b.id]);
    } finally {
      warned.mockRestore();
    }
    // Every delivery went out signed with the secret the receiver has, and no row was written.
    const gotA = await received(nameA);
    expect(gotA.length).toBe(2);
    for (const got of gotA) new Webhook(plainA).verify(got.body, got.headers);
    new Webhook(plainB).verify((await received(nameB))[0]!.body, (await received(nameB))[0]!.headers);
    expect([await storedSecret(a.id), await storedSecret(b.id)]).toEqual([plainA, plainB]);

    // Once the keys are there, the next attempt seals the row: the warning was silenced, not the write-back.
    const sealedNow = await queuedMessage(org.organizationId, a.id, "msg_nokeys_4");
    expect(await sealedNow.work({})).toEqual([expect.objectContaining({ state: "delivered" })]);
    expect(await storedSecret(a.id)).toMatch(/^enc1:edge2:/);
  });
});

describe("webhook secrets at rest: security", { timeout: 40_000 }, () => {
  beforeAll(async () => {
    await seedCatalog();
  });

  it("a legacy plain row rotated: the replaced secret, which keeps signing for the overlap, is kept sealed, never plain", async () => {
    const org = await seedOrganization();
    const endpoint = await register(org.organizationId, hookUrl(`rest-legacy-${crypto.randomUUID()}`));
    const plain = `whsec_${btoa("legacy-plain-rotated-24b")}`;
    await setStoredSecret(endpoint.id, plain);
    expect((await admin("POST", `${base(org.organizationId)}/${endpoint.id}/rotate-secret`)).status).toBe(200);
    const { previous_secret: previous } = (await env.DB.prepare("SELECT previous_secret FROM webhook_endpoints WHERE id = ?")
      .bind(endpoint.id)
      .first<{ previous_secret: string }>())!;
    expect(previous).not.toContain("whsec_");
    expect(previous).toMatch(/^enc1:edge2:/);
    expect(await openSecret(env.WEBHOOK_SECRET_KEYS, previous, webhookSecretAad(org.organizationId, endpoint.id))).toBe(plain);
  });

  it("the D1 row never holds the plain secret, after create and after rotate", async () => {
    const org = await seedOrganization();
    const endpoint = await register(org.organizationId, hookUrl(`rest-${crypto.randomUUID()}`));
    const created = await storedSecret(endpoint.id);
    expect(created).not.toContain(endpoint.secret);
    expect(created).not.toContain("whsec_");
    expect(created).toMatch(/^enc1:edge2:[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+$/);

    const rotated = (await (await admin("POST", `${base(org.organizationId)}/${endpoint.id}/rotate-secret`)).json()) as { secret: string };
    expect(rotated.secret).toMatch(/^whsec_/);
    const after = await storedSecret(endpoint.id);
    expect(after).not.toContain(rotated.secret);
    expect(after).not.toContain("whsec_");
    expect(after).toMatch(/^enc1:edge2:/);
    expect(after).not.toBe(created);
    // The API answers as before: the listing never shows a secret, in either form.
    const list = await (await admin("GET", base(org.organizationId))).text();
    expect(list).not.toContain("whsec_");
    expect(list).not.toContain("enc1:");
  });

  it("a ciphertext moved onto another endpoint's row does not decrypt: logged as an error, nothing sent, nothing rewritten", async () => {
    const org = await seedOrganization();
    const other = await seedOrganization();
    const goodName = `good-${crypto.randomUUID()}`;
    const movedName = `moved-${crypto.randomUUID()}`;
    const crossName = `cross-${crypto.randomUUID()}`;
    const good = await register(org.organizationId, hookUrl(goodName));
    const moved = await register(org.organizationId, hookUrl(movedName));
    const cross = await register(other.organizationId, hookUrl(crossName));
    // Someone with write access to D1 copies the good endpoint's ciphertext onto two other rows.
    const goodCipher = await storedSecret(good.id);
    await setStoredSecret(moved.id, goodCipher);
    await setStoredSecret(cross.id, goodCipher);

    const { workflowId } = await finishRun(org.organizationId);
    await finishRun(other.organizationId);
    const got = await until(async () => {
      const r = await received(goodName);
      return r.length >= 1 ? r : null;
    });
    new Webhook(good.secret).verify(got[0]!.body, got[0]!.headers);

    for (const [orgId, id] of [
      [org.organizationId, moved.id],
      [other.organizationId, cross.id],
    ] as const) {
      const log = await until(async () => {
        const d = await deliveries(orgId, id);
        return d.length >= 1 ? d : null;
      });
      expect(log[0]).toMatchObject({ status: "retrying", responseStatus: null });
      expect(log[0]!.error).toMatch(/signing secret could not be read: .*does not decrypt for this row/);
      // Nothing half-written: the row is left as it was.
      expect(await storedSecret(id)).toBe(goodCipher);
    }
    expect(await received(movedName)).toEqual([]);
    expect(await received(crossName)).toEqual([]);
    const outbox = await runStream(env, workflowId).webhookOutbox();
    expect(outbox.find((r) => r.endpointId === good.id)?.state).toBe("delivered");
    expect(outbox.find((r) => r.endpointId === moved.id)?.state).toBe("pending");
  });

  it("a ciphertext under a key id that is not configured is a clear delivery error", async () => {
    const org = await seedOrganization();
    const name = `unknown-key-${crypto.randomUUID()}`;
    const endpoint = await register(org.organizationId, hookUrl(name));
    const stored = await storedSecret(endpoint.id);
    await setStoredSecret(endpoint.id, stored.replace(/^enc1:edge2:/, "enc1:retired:"));
    await finishRun(org.organizationId);
    const log = await until(async () => {
      const d = await deliveries(org.organizationId, endpoint.id);
      return d.length >= 1 ? d : null;
    });
    expect(log[0]!.error).toBe(
      'the signing secret could not be read: the stored secret was encrypted with key "retired", which is not configured',
    );
    expect(await received(name)).toEqual([]);
  });

  it("WEBHOOK_SECRET_KEYS missing at delivery: the attempt's error says so, an error line is logged, and the delivery is held, not dropped", async () => {
    const org = await seedOrganization();
    const name = `no-keys-${crypto.randomUUID()}`;
    const endpoint = await register(org.organizationId, hookUrl(name));
    const { work } = await queuedMessage(org.organizationId, endpoint.id, "msg_held");
    const logged = vi.spyOn(console, "error").mockImplementation(() => undefined);
    let held: Awaited<ReturnType<typeof work>>;
    try {
      held = await work({ WEBHOOK_SECRET_KEYS: "" });
      const lines = logged.mock.calls.map(([line]) => String(line)).filter((line) => line.includes("webhook_secret_keys_missing"));
      expect(lines.length).toBe(1);
      expect(JSON.parse(lines[0]!)).toMatchObject({ level: "error", code: "webhook_secret_keys_missing", endpointId: endpoint.id });
    } finally {
      logged.mockRestore();
    }
    expect(held).toEqual([expect.objectContaining({ endpointId: endpoint.id, state: "pending", attempts: 1 })]);
    const log = await deliveries(org.organizationId, endpoint.id);
    expect(log).toEqual([expect.objectContaining({ status: "retrying", responseStatus: null })]);
    expect(log[0]!.error).toMatch(/^webhook_secret_keys_missing: .*the WEBHOOK_SECRET_KEYS secret is not set; the operator must set it/);
    expect(await received(name)).toEqual([]);

    // Once the operator sets the secret, the next attempt sends the same message, signed.
    expect(await work({})).toEqual([expect.objectContaining({ state: "delivered", attempts: 2 })]);
    const got = await received(name);
    expect(got.length).toBe(1);
    expect(got[0]!.headers["webhook-id"]).toBe("msg_held");
    new Webhook(endpoint.secret).verify(got[0]!.body, got[0]!.headers);
  });

  it("a rotation between the delivery's read and its write-back is not overwritten: the row keeps the rotated secret", async () => {
    const org = await seedOrganization();
    const name = `race-${crypto.randomUUID()}`;
    const endpoint = await register(org.organizationId, hookUrl(name));
    const plain = generateWebhookSecret();
    await setStoredSecret(endpoint.id, plain);
    const rotatedTo = generateWebhookSecret();
    // The attempt reads the plain row; before it can write back, an admin rotates the secret.
    const writeBacks: number[] = [];
    const counted = dbWith("UPDATE webhook_endpoints", async (run) => {
      const result = (await run()) as D1Result;
      writeBacks.push(result.meta.changes);
      return result;
    });
    const racing = dbWith(
      "SELECT url, secret, previous_secret, previous_secret_expires_at FROM webhook_endpoints",
      async (read) => {
        const row = await read();
        const replacing = await storedSecret(endpoint.id);
        expect(
          await rotateWebhookSecret(
            env.DB,
            env.WEBHOOK_SECRET_KEYS,
            { organizationId: org.organizationId, id: endpoint.id, replacing },
            rotatedTo,
            0,
          ),
        ).not.toBeNull();
        return row;
      },
      counted,
    );
    const { work } = await queuedMessage(org.organizationId, endpoint.id, "msg_race");
    expect(await work({ DB: racing })).toEqual([expect.objectContaining({ state: "delivered" })]);
    const got = await received(name);
    new Webhook(plain).verify(got[0]!.body, got[0]!.headers);
    // The write-back was tried and changed nothing; the rotation stands.
    expect(writeBacks).toEqual([0]);
    const stored = await storedSecret(endpoint.id);
    expect(await openSecret(env.WEBHOOK_SECRET_KEYS, stored, webhookSecretAad(org.organizationId, endpoint.id))).toBe(rotatedTo);
  });
});
