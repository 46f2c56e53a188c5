/**
 * Whether a tenant's organization may be served: every tenant credential the edge accepts (API
 * keys, the stream tokens they mint, JWTs, the internal service secret) names an organization, and
 * one an operator has suspended (admin API, `organizations.suspended_at`) is refused with 403
 * `organization_suspended` (docs/authentication.md#suspended-organizations).
 *
 * An organization's status is cached in the isolate like an API key: one D1 read per organization
 * and isolate every ORGANIZATION_STATUS_CACHE_TTL_MS, not one per request. That is also the
 * longest a suspension (or a resume) takes to reach every isolate.
 */
import { ApiError } from "../errors.ts";
import { unavailableOnTransient } from "./transient-errors.ts";
import { setBounded } from "../shared/bounded-map.ts";

/** How long an organization's status stays cached in the isolate: the longest a suspended organization is still served. */
export const ORGANIZATION_STATUS_CACHE_TTL_MS = 30_000;
const ORGANIZATION_STATUS_CACHE_MAX_ENTRIES = 10_000;

interface CachedStatus {
  suspended: boolean;
  expiresAt: number;
}
/** Organizations found in D1, with their status. One that does not exist is not kept: it may be created later. */
const cache = new Map<string, CachedStatus>();

/** For tests: forget every organization's status, as if ORGANIZATION_STATUS_CACHE_TTL_MS had passed. */
export function clearOrganizationStatusCache(): void {
  cache.clear();
}

/** The organization's status from the isolate's cache or D1; null when there is no such organization. */
export async function organizationStatus(db: D1Database, organizationId: string): Promise<{ suspended: boolean } | null> {
  const now = Date.now();
  const hit = cache.get(organizationId);
  if (hit && hit.expiresAt > now) return hit;
  const row = await unavailableOnTransient("organization verification", () =>
    db.prepare("SELECT suspended_at FROM organizations WHERE id = ?").bind(organizationId).first<{ suspended_at: string | null }>(),
  );
  if (!row) {
    cache.delete(organizationId);
    return null;
  }
  return rememberOrganizationStatus(organizationId, row.suspended_at !== null, now);
}

/**
 * Caches a status read along with something else (key auth reads it with the key): the
 * organization's next check in this isolate makes no read of its own.
 */
export function rememberOrganizationStatus(organizationId: string, suspended: boolean, now: number = Date.now()): CachedStatus {
  const entry = { suspended, expiresAt: now + ORGANIZATION_STATUS_CACHE_TTL_MS };
  setBounded(cache, organizationId, entry, ORGANIZATION_STATUS_CACHE_MAX_ENTRIES);
  return entry;
}

/**
 * The 403 of a suspended organization. Only a caller whose credential checked out is told: the
 * organization's own. The operator's reason is not said (it is theirs, shown by the admin API only).
 */
export const organizationSuspended = (organizationId: string) =>
  new ApiError(
    "organization_suspended",
    `organization ${organizationId} is suspended: its requests are refused until an operator resumes it`,
  );

/**
 * Throws 403 `organization_suspended` when the organization is suspended. The organization of a
 * verified credential exists (organizations are never deleted), so no row reads as not suspended.
 */
export async function refuseSuspendedOrganization(db: D1Database, organizationId: string): Promise<void> {
  if ((await organizationStatus(db, organizationId))?.suspended) throw organizationSuspended(organizationId);
}
