import { z } from "zod";
import type { App } from "../../app-env.ts";
import { listRecentRuns } from "../../db/runs.ts";
import { ApiError } from "../../errors.ts";
import { zodIssues } from "../../middleware/json-body/index.ts";

export const recentRunsQuery = z.object({ limit: z.coerce.number().int().min(1).max(100).default(20) });

/** GET /workflow/runs?limit=: the organization's recent runs, newest first. */
export function registerRunsList(app: App) {
  app.get("/workflow/runs", async (c) => {
    const parsed = recentRunsQuery.safeParse(c.req.query());
    if (!parsed.success) throw new ApiError("invalid_request", "limit must be an integer from 1 to 100", zodIssues(parsed.error));
    const rows = await listRecentRuns(c.env.DB, c.get("auth").organizationId, parsed.data.limit);
    return c.json({
      runs: rows.map((r) => ({
        workflowId: r.temporalWorkflowId,
        runId: r.temporalRunId,
        workflowName: r.workflowName,
        status: r.status,
        createdAt: r.createdAt,
        startedAt: r.startedAt,
        completedAt: r.completedAt,
      })),
    });
  });
}
