import type { App } from "../../app-env.ts";
import { availableCredits } from "../../db/credits.ts";
import {
  findOrganization,
  insertOrganization,
  listOrganizations,
  resumeOrganization,
  suspendOrganization,
} from "../../db/organizations.ts";
import type { Organization } from "../../db/schema.ts";
import { ApiError, quotedId } from "../../errors.ts";
import { type PageCursor, decodePageCursor } from "../../db/page-cursor.ts";
import { readJson, zodIssues } from "../../middleware/json-body/index.ts";
import { singleValuedQuery } from "../../middleware/query/index.ts";
import { randomString } from "../../shared/api-keys.ts";
import type { Context } from "hono";
import type { z } from "zod";
import { ORGANIZATION_STATUS_CACHE_TTL_MS, rememberOrganizationStatus } from "../../lib/organization-status.ts";
import { ADMIN_ID_PATTERN, ADMIN_PAGE_MAX, createOrganizationBody, organizationsQuery, suspendOrganizationBody } from "./schemas.ts";

export function organizationView(org: Organization) {
  const metered = org.creditBalance !== null;
  return {
    id: org.id,
    name: org.name,
    credits: {
      metered,
      balance: org.creditBalance,
      reserved: org.creditsReserved,
      available: availableCredits(org.creditBalance, org.creditsReserved),
    },
    /** Runs that have not ended; starts past MAX_OPEN_RUNS_PER_ORGANIZATION are 429. */
    openRuns: org.openRuns,
    /** `suspended`: every tenant request of the organization is 403 organization_suspended. */
    status: org.suspendedAt === null ? ("active" as const) : ("suspended" as const),
    suspendedAt: org.suspendedAt,
    suspensionReason: org.suspensionReason,
    createdAt: org.createdAt,
  };
}

/**
 * A list's `before` parameter (or, named `field`, another cursor this API hands out as `next`) as a
 * cursor (null when absent), or 400 when it is not a `next` this API issued.
 */
export function beforeCursor(before: string | undefined, field = "before"): PageCursor | null {
  if (before === undefined) return null;
  const cursor = decodePageCursor(before);
  if (!cursor)
    throw new ApiError("invalid_request", `${field} must be the previous answer's next`, [
      { path: field, message: "not a cursor of this API" },
    ]);
  return cursor;
}

/** A newest-first admin list's `?limit&before` (schemas.ts `adminPageQuery`), or 400 naming both. */
export function pageQueryOrThrow(
  c: Context,
  schema: z.ZodType<{ limit: number; before?: string | undefined }>,
  maxLimit: number = ADMIN_PAGE_MAX,
): { limit: number; before: PageCursor | null } {
  const query = schema.safeParse(singleValuedQuery(c));
  if (!query.success)
    throw new ApiError(
      "invalid_request",
      `limit must be an integer from 1 to ${maxLimit}, before the previous answer's next; no other parameters`,
      zodIssues(query.error),
    );
  return { limit: query.data.limit, before: beforeCursor(query.data.before) };
}

/** The organization named in the path, or 404. */
export async function organizationOrThrow(env: Env, id: string): Promise<Organization> {
  const org = ADMIN_ID_PATTERN.test(id) ? await findOrganization(env.DB, id) : null;
  if (!org) throw new ApiError("organization_not_found", `no organization ${quotedId(id)}`);
  return org;
}

export function registerOrganizations(app: App) {
  app.post("/admin/v1/organizations", async (c) => {
    const body = await readJson(c, createOrganizationBody);
    const id = body.id ?? `org_${randomString(12, "abcdefghijklmnopqrstuvwxyz0123456789")}`;
    if (!(await insertOrganization(c.env.DB, id, body.name)))
      throw new ApiError("organization_exists", `organization "${id}" already exists`);
    return c.json(organizationView((await findOrganization(c.env.DB, id))!), 201);
  });

  /** Newest first, a page at a time: `before` = the previous page's `next` (null on the last page). */
  app.get("/admin/v1/organizations", async (c) => {
    const { limit, before } = pageQueryOrThrow(c, organizationsQuery);
    const { page, next } = await listOrganizations(c.env.DB, limit, before);
    return c.json({ organizations: page.map(organizationView), next });
  });

  app.get("/admin/v1/organizations/:orgId", async (c) => c.json(organizationView(await organizationOrThrow(c.env, c.req.param("orgId")))));

  /**
   * Suspend and resume, each idempotent (a second suspension keeps the first one's time and
   * reason). Edge isolates cache an organization's status: the answer says how long the change may
   * take to reach them all (the isolate that takes it applies it at once).
   */
  app.post("/admin/v1/organizations/:orgId/suspend", async (c) => {
    const org = await organizationOrThrow(c.env, c.req.param("orgId"));
    const { reason } = await readJson(c, suspendOrganizationBody);
    const row = (await suspendOrganization(c.env.DB, org.id, reason))!;
    // This isolate applies it at once; the others when their cached status expires.
    rememberOrganizationStatus(org.id, true);
    return c.json({ ...organizationView(row), effectiveWithinMs: ORGANIZATION_STATUS_CACHE_TTL_MS });
  });

  app.post("/admin/v1/organizations/:orgId/resume", async (c) => {
    const org = await organizationOrThrow(c.env, c.req.param("orgId"));
    const row = (await resumeOrganization(c.env.DB, org.id))!;
    rememberOrganizationStatus(org.id, false);
    return c.json({ ...organizationView(row), effectiveWithinMs: ORGANIZATION_STATUS_CACHE_TTL_MS });
  });
}
