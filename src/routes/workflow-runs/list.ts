import type { App } from "../../app-env.ts";
import { countRunsByStatus, listWorkflowRuns } from "../../db/workflow-runs.ts";
import { ApiError, issueText } from "../../errors.ts";
import { zodIssues } from "../../middleware/json-body/index.ts";
import { STATUSES_BY_WORKFLOW_RUN_STATUS, WORKFLOW_RUN_STATUSES, toWorkflowRunStatus, type RunStatus } from "../../shared/run-status.ts";
import { listedWorkflowId, listQuery } from "./schemas.ts";
import { workflowRunView } from "./views.ts";
import { singleValuedQuery } from "../../middleware/query/index.ts";

/** GET /api/v1/workflow-runs and GET /api/v1/workflow-runs/dashboard/:workflowId */
export function registerListAndDashboard(app: App) {
  app.get("/api/v1/workflow-runs", async (c) => {
    const parsed = listQuery.safeParse(singleValuedQuery(c));
    if (!parsed.success) {
      const issues = zodIssues(parsed.error);
      throw new ApiError("invalid_request", `invalid query: ${issueText(issues, (i) => `${i.path}: ${i.message}`)}`, issues);
    }
    const { workflowId, status, page, limit, search } = parsed.data;
    const { rows, total } = await listWorkflowRuns(
      c.env.DB,
      c.get("auth").organizationId,
      {
        workflowId,
        search,
        statuses: status ? STATUSES_BY_WORKFLOW_RUN_STATUS[status] : undefined,
        waiting: status === "waiting" ? true : status === "running" ? false : undefined,
      },
      page,
      limit,
    );
    const totalPages = Math.ceil(total / limit);
    return c.json({
      data: rows.map(workflowRunView),
      pagination: { page, limit, total, totalPages, hasNextPage: page < totalPages, hasPreviousPage: page > 1 },
    });
  });

  app.get("/api/v1/workflow-runs/dashboard/:workflowId", async (c) => {
    const parsed = listedWorkflowId.safeParse(c.req.param("workflowId"));
    if (!parsed.success) throw new ApiError("workflow_not_found", "workflowId must be a workflow's UUID, or a prompt workflow's wf_ id");
    const workflowId = parsed.data;
    const rows = await countRunsByStatus(c.env.DB, c.get("auth").organizationId, workflowId);
    const counts = Object.fromEntries(WORKFLOW_RUN_STATUSES.map((s) => [s, 0])) as Record<(typeof WORKFLOW_RUN_STATUSES)[number], number>;
    for (const row of rows) counts[toWorkflowRunStatus(row.status as RunStatus, row.waiting ? "yes" : null)] += row.n;
    return c.json({ workflowId, total: rows.reduce((n, r) => n + r.n, 0), counts });
  });
}
