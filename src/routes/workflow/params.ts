import { ApiError } from "../../errors.ts";
import { zodIssues } from "../../middleware/json-body/index.ts";
import { runIdParam, workflowIdSchema } from "./schemas.ts";

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

/** The `:rid` of a pinned route: a UUID (Temporal run ids are), else 400. */
export function parseRunIdParam(raw: string): string {
  const parsed = runIdParam.safeParse(raw);
  if (!parsed.success) throw new ApiError("invalid_request", "invalid run id: expected a UUID", zodIssues(parsed.error, "rid"));
  return parsed.data.toLowerCase();
}
