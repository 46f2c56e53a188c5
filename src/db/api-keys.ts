import { and, desc, eq, isNull } from "drizzle-orm";
import { db } from "./client.ts";
import { type PageCursor, olderThan, pageOf } from "./page-cursor.ts";
import { apiKeys, type ApiKey, organizations } from "./schema.ts";

/**
 * The key with this id, and when its organization was suspended (null: active), in one read: key
 * auth makes it on every isolate cache miss, and a second read for the organization would be a
 * second round trip to the home region.
 */
export async function findApiKeyWithOrganizationStatus(d1: D1Database, id: string) {
  const row = (
    await db(d1)
      .select({ key: apiKeys, organizationSuspendedAt: organizations.suspendedAt })
      .from(apiKeys)
      .innerJoin(organizations, eq(organizations.id, apiKeys.organizationId))
      .where(eq(apiKeys.id, id))
      .limit(1)
  )[0];
  return row ? { ...row.key, organizationSuspendedAt: row.organizationSuspendedAt } : null;
}

export async function insertApiKey(
  d1: D1Database,
  row: Pick<ApiKey, "id" | "organizationId" | "prefix" | "secretSha256" | "name" | "rateLimitPerMinute" | "scopes">,
) {
  return (await db(d1).insert(apiKeys).values(row).returning())[0]!;
}

/** The organization's keys (revoked ones too), newest first, `limit` at a time after `before`. */
export async function listApiKeys(d1: D1Database, organizationId: string, limit: number, before: PageCursor | null) {
  const rows = await db(d1)
    .select()
    .from(apiKeys)
    .where(and(eq(apiKeys.organizationId, organizationId), olderThan(apiKeys.createdAt, apiKeys.id, before)))
    .orderBy(desc(apiKeys.createdAt), desc(apiKeys.id))
    .limit(limit + 1);
  return pageOf(rows, limit);
}

/** Revokes a key once; the revocation time of the first call stays. Null when there is no such key. */
export async function revokeApiKey(d1: D1Database, organizationId: string, id: string) {
  const now = new Date().toISOString();
  await db(d1)
    .update(apiKeys)
    .set({ revokedAt: now, updatedAt: now })
    .where(and(eq(apiKeys.id, id), eq(apiKeys.organizationId, organizationId), isNull(apiKeys.revokedAt)));
  const row = (
    await db(d1)
      .select()
      .from(apiKeys)
      .where(and(eq(apiKeys.id, id), eq(apiKeys.organizationId, organizationId)))
      .limit(1)
  )[0];
  return row ?? null;
}
