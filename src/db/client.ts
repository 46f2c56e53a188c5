import { drizzle } from "drizzle-orm/d1";
import * as schema from "./schema.ts";

export function db(d1: D1Database) {
  return drizzle(d1, { schema });
}
export type Db = ReturnType<typeof db>;

/** D1 refused a write because of a UNIQUE index (the message may be on the error or its cause). */
export function isUniqueViolation(err: unknown): boolean {
  return /UNIQUE constraint failed/i.test(String((err as Error)?.message ?? err) + String((err as { cause?: unknown })?.cause ?? ""));
}
