import { asc, eq } from "drizzle-orm";
import { db } from "./client.ts";
import { organizations } from "./schema.ts";

export async function findOrganization(d1: D1Database, id: string) {
  return (await db(d1).select().from(organizations).where(eq(organizations.id, id)).limit(1))[0] ?? null;
}

export async function listOrganizations(d1: D1Database) {
  return db(d1).select().from(organizations).orderBy(asc(organizations.createdAt), asc(organizations.id));
}

/** Inserts the organization; false when the id is taken. */
export async function insertOrganization(d1: D1Database, id: string, name: string): Promise<boolean> {
  const rows = await db(d1).insert(organizations).values({ id, name }).onConflictDoNothing().returning({ id: organizations.id });
  return rows.length > 0;
}
