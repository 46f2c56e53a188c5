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

/**
 * A D1 session that a read replica near the Worker may answer (the primary when replication is
 * off). Only for reads whose staleness is harmless: see docs/architecture.md, "Where each part
 * lives in production". Typed as a database because drizzle and our queries only prepare
 * statements and batch them, which a session does too.
 */
export function nearbyReads(d1: D1Database): D1Database {
  return d1.withSession("first-unconstrained") as unknown as D1Database;
}
