import type { App } from "../../app-env.ts";
import { ApiError } from "../../errors.ts";
import { readJson } from "../../middleware/json-body/index.ts";
import { isTerminal } from "../../shared/run-status.ts";
import { getRunOrThrow, settleRun } from "../../services/runs.ts";
import { outputResult } from "./result-body.ts";
import { runWorkflowBody } from "./schemas.ts";
import { startFromRequest } from "./start-request.ts";

/**
 * POST /workflow/run: starts a run and waits for its result, `timeout` ms (default
 * RUN_WAIT_DEFAULT_MS, 300 s as Output). When the wait runs out first the answer is Output's 408
 * WorkflowExecutionTimedOutError with the `workflowId`; the run goes on, and the Location header
 * points at its result.
 */
export function registerRun(app: App) {
  app.post("/workflow/run", async (c) => {
    const request = await readJson(c, runWorkflowBody);
    const { started, streamToken, streamTokenExpiresAt } = await startFromRequest(c, request);
    const organizationId = c.get("auth").organizationId;
    const waitMs = request.timeout ?? Number(c.env.RUN_WAIT_DEFAULT_MS);
    const run = await settleRun(c.env, await getRunOrThrow(c.env, organizationId, started.workflowId), waitMs, false);
    if (!isTerminal(run.status)) {
      throw new ApiError(
        "wait_timed_out",
        `Workflow execution exceeded timeout for synchronous execution. The run goes on: GET /workflow/${started.workflowId}/result once it ends`,
        undefined,
        { location: `/workflow/${encodeURIComponent(started.workflowId)}/result` },
        started.workflowId,
      );
    }
    return c.json({ ...(await outputResult(c.env, run)), streamToken, streamTokenExpiresAt }, 200);
  });
}
