import { z } from "zod";
import { queryInt } from "../../shared/query-int.ts";
import type { App } from "../../app-env.ts";
import { listRecentRuns } from "../../db/runs.ts";
import { nameForms } from "../../shared/names.ts";
import { ApiError, issueText } from "../../errors.ts";
import { zodIssues } from "../../middleware/json-body/index.ts";
import { CATALOG_ID, catalogIdSchema } from "./schemas.ts";
import { singleValuedQuery } from "../../middleware/query/index.ts";

/** Output's query: `workflowType` and `catalog` filters, `limit` 1-1000 (default 100). */
export const recentRunsQuery = z.object({
  workflowType: z.string().min(1).max(256).optional(),
  catalog: catalogIdSchema.optional(),
  limit: queryInt(1, 1000).default(100),
});

/**
 * GET /workflow/runs?workflowType=&catalog=&limit=: the organization's recent runs, newest first,
 * as Output lists them (`{runs: [{workflowId, runId, workflowType, status, startedAt,
 * completedAt}], count}`, ISO times), plus `createdAt`. A catalog other than Outrider's one has
 * no runs.
 */
export function registerRunsList(app: App) {
  app.get("/workflow/runs", async (c) => {
    const parsed = recentRunsQuery.safeParse(singleValuedQuery(c));
    if (!parsed.success) {
      const issues = zodIssues(parsed.error);
      throw new ApiError("invalid_request", `invalid query: ${issueText(issues, (i) => `${i.path}: ${i.message}`)}`, issues);
    }
    const { workflowType, catalog, limit } = parsed.data;
    const organizationId = c.get("auth").organizationId;
    let rows: Awaited<ReturnType<typeof listRecentRuns>> = [];
    if (catalog === undefined || catalog === CATALOG_ID) {
      // The run's own workflow name, as the unfiltered list shows it (Output filters on the run's
      // WorkflowType): runs of a prompt workflow, or of one no longer published, are found too.
      // A name in either Unicode form finds it (names are stored in NFC; src/shared/names.ts).
      rows = await listRecentRuns(
        c.env.DB,
        organizationId,
        limit,
        workflowType === undefined ? {} : { workflowNames: nameForms(workflowType) },
      );
    }
    const runs = rows.map((r) => ({
      workflowId: r.temporalWorkflowId,
      runId: r.temporalRunId,
      workflowType: r.workflowName,
      status: r.status,
      // A run not yet confirmed by Temporal has no start time; Output's field is never empty.
      startedAt: r.startedAt ?? r.createdAt,
      completedAt: r.completedAt ?? null,
      createdAt: r.createdAt,
    }));
    return c.json({ runs, count: runs.length });
  });
}
