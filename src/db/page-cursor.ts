/**
 * Keyset paging over rows ordered by (created_at, id): where a page ends, handed to callers as an
 * opaque base64url token (`next`) and taken back as `before`. Opaque so that the order
 * can change without breaking callers; any text this API did not issue decodes to null.
 */
import { type SQL, and, eq, lt, or } from "drizzle-orm";
import type { SQLiteColumn } from "drizzle-orm/sqlite-core";

export interface PageCursor {
  createdAt: string;
  id: string;
}

export function encodePageCursor(cursor: PageCursor): string {
  const bytes = new TextEncoder().encode(JSON.stringify([cursor.createdAt, cursor.id]));
  return btoa(String.fromCharCode(...bytes))
    .replace(/\+/g, "-")
    .replace(/\//g, "_")
    .replace(/=+$/, "");
}

/** The cursor, or null when the text is not one this API issued. */
export function decodePageCursor(text: string): PageCursor | null {
  try {
    const binary = atob(text.replace(/-/g, "+").replace(/_/g, "/"));
    const value: unknown = JSON.parse(
      new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(Uint8Array.from(binary, (ch) => ch.charCodeAt(0))),
    );
    if (!Array.isArray(value) || value.length !== 2 || typeof value[0] !== "string" || typeof value[1] !== "string") return null;
    return { createdAt: value[0], id: value[1] };
  } catch {
    return null;
  }
}

/** The page of `limit` rows out of `limit + 1` fetched, and the cursor after its last row (null on the last page). */
export function pageOf<T extends PageCursor>(rows: T[], limit: number): { page: T[]; next: string | null } {
  const page = rows.slice(0, limit);
  const last = page.at(-1);
  return { page, next: rows.length > limit && last ? encodePageCursor({ createdAt: last.createdAt, id: last.id }) : null };
}

/** Rows after `before` in newest-first order ((created_at, id) descending); no condition without a cursor. */
export function olderThan(createdAt: SQLiteColumn, id: SQLiteColumn, before: PageCursor | null): SQL | undefined {
  return before ? or(lt(createdAt, before.createdAt), and(eq(createdAt, before.createdAt), lt(id, before.id))) : undefined;
}
