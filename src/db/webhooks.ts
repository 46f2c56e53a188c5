/**
 * Webhook endpoints and their delivery log (admin API; the run's RunStream reads and writes them).
 * The signing secret is stored encrypted (src/shared/secret-box.ts, keys from WEBHOOK_SECRET_KEYS,
 * bound to the organization and endpoint ids); callers pass and get back the plain `whsec_` value.
 */
import { and, desc, eq, isNull } from "drizzle-orm";
import { isSealed, sealSecret, webhookSecretAad } from "../shared/secret-box.ts";
import { db } from "./client.ts";
import { type PageCursor, olderThan, pageOf } from "./page-cursor.ts";
import { webhookAttempts, webhookEndpoints, type WebhookEndpoint } from "./schema.ts";

/**
 * The most live endpoints an organization has. Every run's end queues one message per endpoint in
 * the run's Durable Object, each with its own copy of the body (up to about 850 KB with an output),
 * sent at most MAX_PARALLEL_DELIVERIES at a time: a list that only grows multiplies every run's
 * storage and delivery work.
 */
export const MAX_WEBHOOK_ENDPOINTS_PER_ORGANIZATION = 25;

/**
 * Inserts an endpoint, unless the organization already has MAX_WEBHOOK_ENDPOINTS_PER_ORGANIZATION
 * live ones (then null, nothing written): the count and the insert are one statement, so two
 * creations at once cannot pass the cap together. `row.secret` is the plain secret, stored
 * encrypted with the newest of `keys`.
 */
export async function insertWebhookEndpoint(
  d1: D1Database,
  keys: string | undefined,
  row: Pick<WebhookEndpoint, "id" | "organizationId" | "url" | "events" | "secret">,
): Promise<WebhookEndpoint | null> {
  const secret = await sealSecret(keys, row.secret, webhookSecretAad(row.organizationId, row.id));
  const inserted = await d1
    .prepare(
      `INSERT INTO webhook_endpoints (id, organization_id, url, events, secret)
       SELECT ?1, ?2, ?3, ?4, ?5
       WHERE (SELECT COUNT(*) FROM webhook_endpoints WHERE organization_id = ?2 AND deleted_at IS NULL) < ?6`,
    )
    .bind(row.id, row.organizationId, row.url, JSON.stringify(row.events), secret, MAX_WEBHOOK_ENDPOINTS_PER_ORGANIZATION)
    .run();
  if (inserted.meta.changes === 0) return null;
  return (await db(d1).select().from(webhookEndpoints).where(eq(webhookEndpoints.id, row.id)).limit(1))[0] ?? null;
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

/** How long a rotated secret keeps signing beside the new one unless the rotation says otherwise (24 h), and the most it may (7 days). */
export const DEFAULT_PREVIOUS_SECRET_VALID_FOR_SECONDS = 24 * 60 * 60;
export const MAX_PREVIOUS_SECRET_VALID_FOR_SECONDS = 7 * 24 * 60 * 60;

/**
 * Replaces the secret (plain `secret`, stored encrypted; a legacy plain row is encrypted from now
 * on), if the stored value is still `replacing` (as read before): of two rotations at once, only
 * one writes, so each caller that is answered a secret holds the one deliveries are signed with.
 * The replaced value (sealed as it was) becomes the previous secret for `previousValidForSeconds`
 * (0: none), in place of any earlier one. Null when nothing was written (the endpoint is gone, or
 * its secret changed meanwhile).
 */
export async function rotateWebhookSecret(
  d1: D1Database,
  keys: string | undefined,
  endpoint: { organizationId: string; id: string; replacing: string },
  secret: string,
  previousValidForSeconds: number,
) {
  const { organizationId, id, replacing } = endpoint;
  const aad = webhookSecretAad(organizationId, id);
  const sealed = await sealSecret(keys, secret, aad);
  const now = Date.now();
  const keepPrevious = previousValidForSeconds > 0;
  // Kept as it was stored; a legacy plain value is sealed first, so no column ever holds one again.
  const previous = keepPrevious ? (isSealed(replacing) ? replacing : await sealSecret(keys, replacing, aad)) : null;
  const rows = await db(d1)
    .update(webhookEndpoints)
    .set({
      secret: sealed,
      previousSecret: previous,
      previousSecretExpiresAt: keepPrevious ? new Date(now + previousValidForSeconds * 1000).toISOString() : null,
      updatedAt: new Date(now).toISOString(),
    })
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
