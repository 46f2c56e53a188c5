import { desc, eq } from "drizzle-orm";
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
