import { eq } from "drizzle-orm";
import { db } from "./client.ts";
import { apiKeys } from "./schema.ts";

export async function findApiKeyById(d1: D1Database, id: string) {
  return (await db(d1).select().from(apiKeys).where(eq(apiKeys.id, id)).limit(1))[0] ?? null;
}
