import type { App } from "../../app-env.ts";
import { ownedRun } from "../../middleware/owned-run/index.ts";
import { targetParams, targetRun, unpinnedAndPinned } from "./run-target.ts";

/** Output's times: epoch milliseconds, or '' when there is none (yet). */
const epochMs = (iso: string | null) => (iso ? Date.parse(iso) : "");

/**
 * GET /workflow/:id/status and /workflow/:id/runs/:rid/status: Output's
 * `{workflowId, runId, status, startedAt, completedAt}` (epoch ms or ''), plus our
 * `workflowName`, `createdAt` and `updatedAt` (ISO).
 */
export function registerStatus(app: App) {
  for (const path of unpinnedAndPinned("status")) {
    app.get(path, targetParams, ownedRun(), async (c) => {
      const run = await targetRun(c);
      return c.json({
        workflowId: run.temporalWorkflowId,
        runId: run.temporalRunId,
        status: run.status,
        startedAt: epochMs(run.startedAt),
        completedAt: epochMs(run.completedAt),
        workflowName: run.workflowName,
        createdAt: run.createdAt,
        updatedAt: run.updatedAt,
      });
    });
  }
}
