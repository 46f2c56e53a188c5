import type { App } from "../../app-env.ts";
import { readRun } from "../../services/runs.ts";
import { parseWorkflowIdParam } from "./params.ts";

/** GET /workflow/:id/status: the run's current or final status. */
export function registerStatus(app: App) {
  app.get("/workflow/:id/status", async (c) => {
    const workflowId = parseWorkflowIdParam(c.req.param("id"));
    const { run } = await readRun(c.env, c.get("auth").organizationId, workflowId);
    return c.json({
      workflowId: run.temporalWorkflowId,
      runId: run.temporalRunId,
      workflowName: run.workflowName,
      status: run.status,
      createdAt: run.createdAt,
      startedAt: run.startedAt,
      completedAt: run.completedAt,
      updatedAt: run.updatedAt,
    });
  });
}
