/**
 * Webhook endpoints and their delivery log (admin API; the run's RunStream reads and writes them).
 * The signing secret is stored encrypted (src/shared/secret-box.ts, keys from WEBHOOK_SECRET_KEYS,
 * bound to the organization and endpoint ids); callers pass and get back the plain `whsec_` value.
 */
import { and, desc, eq, isNull } from "drizzle-orm";
import { sealSecret, webhookSecretAad } from "../shared/secret-box.ts";
import { db } from "./client.ts";
import { type PageCursor, olderThan, pageOf } from "./page-cursor.ts";
import { webhookAttempts, webhookEndpoints, type WebhookEndpoint } from "./schema.ts";

/** Inserts an endpoint; `row.secret` is the plain secret, stored encrypted with the newest of `keys`. */
export async function insertWebhookEndpoint(
  d1: D1Database,
  keys: string | undefined,
  row: Pick<WebhookEndpoint, "id" | "organizationId" | "url" | "events" | "secret">,
) {
  const secret = await sealSecret(keys, row.secret, webhookSecretAad(row.organizationId, row.id));
  return (
    await db(d1)
      .insert(webhookEndpoints)
      .values({ ...row, secret })
      .returning()
  )[0]!;
}

/** The organization's live endpoints, newest first, `limit` at a time after `before`. */
export async function listWebhookEndpoints(d1: D1Database, organizationId: string, limit: number, before: PageCursor | null) {
  const rows = await db(d1)
    .select()
    .from(webhookEndpoints)
    .where(
      and(
        eq(webhookEndpoints.organizationId, organizationId),
        isNull(webhookEndpoints.deletedAt),
        olderThan(webhookEndpoints.createdAt, webhookEndpoints.id, before),
      ),
    )
    .orderBy(desc(webhookEndpoints.createdAt), desc(webhookEndpoints.id))
    .limit(limit + 1);
  return pageOf(rows, limit);
}

export async function findWebhookEndpoint(d1: D1Database, organizationId: string, id: string) {
  const rows = await db(d1)
    .select()
    .from(webhookEndpoints)
    .where(and(eq(webhookEndpoints.id, id), eq(webhookEndpoints.organizationId, organizationId), isNull(webhookEndpoints.deletedAt)))
    .limit(1);
  return rows[0] ?? null;
}

/** Soft delete: the delivery log stays readable; pending deliveries to it stop. */
export async function deleteWebhookEndpoint(d1: D1Database, organizationId: string, id: string) {
  const now = new Date().toISOString();
  const rows = await db(d1)
    .update(webhookEndpoints)
    .set({ deletedAt: now, updatedAt: now })
    .where(and(eq(webhookEndpoints.id, id), eq(webhookEndpoints.organizationId, organizationId), isNull(webhookEndpoints.deletedAt)))
    .returning();
  return rows[0] ?? null;
}

/**
 * Replaces the secret (plain `secret`, stored encrypted; a legacy plain row is encrypted from now
 * on), if the stored value is still `replacing` (as read before): of two rotations at once, only
 * one writes, so each caller that is answered a secret holds the one deliveries are signed with.
 * Null when nothing was written (the endpoint is gone, or its secret changed meanwhile).
 */
export async function rotateWebhookSecret(
  d1: D1Database,
  keys: string | undefined,
  endpoint: { organizationId: string; id: string; replacing: string },
  secret: string,
) {
  const { organizationId, id, replacing } = endpoint;
  const sealed = await sealSecret(keys, secret, webhookSecretAad(organizationId, id));
  const rows = await db(d1)
    .update(webhookEndpoints)
    .set({ secret: sealed, updatedAt: new Date().toISOString() })
    .where(
      and(
        eq(webhookEndpoints.id, id),
        eq(webhookEndpoints.organizationId, organizationId),
        isNull(webhookEndpoints.deletedAt),
        eq(webhookEndpoints.secret, replacing),
      ),
    )
    .returning();
  return rows[0] ?? null;
}

/**
 * The endpoint's delivery attempts (also for a deleted endpoint), newest first, `limit` at a time
 * after `before`; the cursor's `createdAt` is an attempt's `attemptedAt`.
 */
export async function listWebhookAttempts(
  d1: D1Database,
  organizationId: string,
  endpointId: string,
  limit: number,
  before: PageCursor | null,
) {
  const rows = await db(d1)
    .select()
    .from(webhookAttempts)
    .where(
      and(
        eq(webhookAttempts.endpointId, endpointId),
        eq(webhookAttempts.organizationId, organizationId),
        olderThan(webhookAttempts.attemptedAt, webhookAttempts.id, before),
      ),
    )
    .orderBy(desc(webhookAttempts.attemptedAt), desc(webhookAttempts.id))
    .limit(limit + 1);
  return pageOf(
    rows.map((row) => ({ ...row, createdAt: row.attemptedAt })),
    limit,
  );
}

/** Whether the organization has the endpoint: `live` (not deleted), or `any` (a deleted one's delivery log stays readable). */
export async function endpointExists(d1: D1Database, organizationId: string, id: string, which: "live" | "any") {
  const rows = await db(d1)
    .select({ id: webhookEndpoints.id })
    .from(webhookEndpoints)
    .where(
      and(
        eq(webhookEndpoints.id, id),
        eq(webhookEndpoints.organizationId, organizationId),
        which === "live" ? isNull(webhookEndpoints.deletedAt) : undefined,
      ),
    )
    .limit(1);
  return rows.length > 0;
}
