import type { App } from "../../app-env.ts";
import { ApiError } from "../../errors.ts";
import { ownedRun } from "../../middleware/owned-run/index.ts";
import { isTerminal } from "../../shared/run-status.ts";
import { outputResult } from "./result-body.ts";
import { targetParams, targetRun, targetRunView, unpinnedAndPinned } from "./run-target.ts";

/**
 * GET /workflow/:id/result and /workflow/:id/runs/:rid/result: the result of a run that has
 * ended (completed, failed, cancelled, ... all 200); 424 WorkflowNotCompletedError while it runs.
 */
export function registerResult(app: App) {
  for (const path of unpinnedAndPinned("result")) {
    app.get(path, targetParams, ownedRun(), async (c) => {
      const { run, attributes } = await targetRunView(c, { attributes: true });
      if (!isTerminal(run.status)) {
        throw new ApiError(
          "run_not_finished",
          `Workflow execution is not complete (${run.status}); its result exists once it ends`,
          undefined,
          undefined,
          run.temporalWorkflowId,
        );
      }
      return c.json(await outputResult(c.env, run, attributes));
    });
  }
}

/**
 * GET /workflow/:id/input and /workflow/:id/runs/:rid/input: the run's input, also while it runs.
 * Unpinned, as Output's: the input the workflow was first started with, and the id of that run.
 */
export function registerInput(app: App) {
  for (const path of unpinnedAndPinned("input")) {
    app.get(path, targetParams, ownedRun(), async (c) => {
      const run = await targetRun(c, { settle: false, firstRun: true });
      return c.json({ workflowId: run.temporalWorkflowId, runId: run.temporalRunId, input: run.input ?? null });
    });
  }
}
