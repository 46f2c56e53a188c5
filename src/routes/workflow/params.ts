import { createMiddleware } from "hono/factory";
import type { AppEnv } from "../../app-env.ts";
import { ApiError } from "../../errors.ts";
import { zodIssues } from "../../middleware/json-body/index.ts";
import { anyCaseUuid } from "../../shared/any-case-uuid.ts";
import { workflowIdSchema } from "./schemas.ts";

/**
 * The `:id` of a `/workflow/:id/...` route (already URL-decoded by the router). An id that no
 * run could have (bad characters, too long, an encoded `/`) is 400, before D1 or the host see it.
 */
export function parseWorkflowIdParam(raw: string): string {
  const parsed = workflowIdSchema.safeParse(raw);
  if (!parsed.success)
    throw new ApiError("invalid_request", `invalid workflow id: ${parsed.error.issues[0]?.message}`, zodIssues(parsed.error, "id"));
  return parsed.data;
}

/**
 * The `:rid` of a pinned route: a UUID (Temporal's run ids are, and Output requires one), else 400.
 * Temporal's run ids are lower-case; any letter case names the same run.
 */
export function parseRunIdParam(raw: string): string {
  const parsed = anyCaseUuid.safeParse(raw);
  if (!parsed.success) throw new ApiError("invalid_request", "invalid run id: expected a UUID", zodIssues(parsed.error, "rid"));
  return parsed.data;
}

/** parseRunIdParam for a route that may have no `:rid` (its unpinned form). */
export function parsePinnedRunId(raw: string | undefined): string | undefined {
  return raw === undefined ? undefined : parseRunIdParam(raw);
}

/** Hono generics of a route behind `pinnedRunParam`: its pinned run id, undefined on the unpinned form. */
export interface PinnedRunEnv extends AppEnv {
  Variables: AppEnv["Variables"] & { pinnedRunId: string | undefined };
}

/** The `:rid` of a pinned route (parsePinnedRunId: 400 before anything is read), as `pinnedRunId`. */
export const pinnedRunParam = createMiddleware<PinnedRunEnv>(async (c, next) => {
  c.set("pinnedRunId", parsePinnedRunId(c.req.param("rid")));
  await next();
});
