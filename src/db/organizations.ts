import { and, desc, eq, isNotNull, isNull } from "drizzle-orm";
import { db } from "./client.ts";
import { type PageCursor, olderThan, pageOf } from "./page-cursor.ts";
import { organizations } from "./schema.ts";

export async function findOrganization(d1: D1Database, id: string) {
  return (await db(d1).select().from(organizations).where(eq(organizations.id, id)).limit(1))[0] ?? null;
}

/** Organizations, newest first, `limit` of them from `before` on; `next` goes on, null on the last page. */
export async function listOrganizations(d1: D1Database, limit: number, before: PageCursor | null) {
  const rows = await db(d1)
    .select()
    .from(organizations)
    .where(olderThan(organizations.createdAt, organizations.id, before))
    .orderBy(desc(organizations.createdAt), desc(organizations.id))
    .limit(limit + 1);
  return pageOf(rows, limit);
}

/** Inserts the organization; false when the id is taken. */
export async function insertOrganization(d1: D1Database, id: string, name: string): Promise<boolean> {
  const rows = await db(d1).insert(organizations).values({ id, name }).onConflictDoNothing().returning({ id: organizations.id });
  return rows.length > 0;
}

/**
 * Suspends the organization (`reason` given) or resumes it (null), each only when it is not so
 * already: a second suspension keeps the first one's time and reason (as a key's revocation keeps
 * its first time). The organization as it is then; null when there is no such organization.
 */
async function setSuspension(d1: D1Database, id: string, reason: string | null) {
  const now = new Date().toISOString();
  await db(d1)
    .update(organizations)
    .set({ suspendedAt: reason === null ? null : now, suspensionReason: reason, updatedAt: now })
    .where(and(eq(organizations.id, id), reason === null ? isNotNull(organizations.suspendedAt) : isNull(organizations.suspendedAt)));
  return findOrganization(d1, id);
}

export const suspendOrganization = (d1: D1Database, id: string, reason: string) => setSuspension(d1, id, reason);
export const resumeOrganization = (d1: D1Database, id: string) => setSuspension(d1, id, null);
