import type { App } from "../../app-env.ts";
import { readJson } from "../../middleware/json-body/index.ts";
import { isTerminal } from "../../shared/run-status.ts";
import { getRunOrThrow, resultPayload, settleRun, startRun } from "../../services/runs.ts";
import { runWorkflowBody } from "./schemas.ts";

/**
 * POST /workflow/run: starts a run and waits for its result. When `timeout` (ms, default
 * RUN_WAIT_DEFAULT_MS) runs out first, answers 202 Accepted with the same payload shape (status
 * `running`, output null) and a Location header to poll: the run goes on, nothing is lost.
 */
export function registerRun(app: App) {
  app.post("/workflow/run", async (c) => {
    const body = await readJson(c, runWorkflowBody);
    const organizationId = c.get("auth").organizationId;
    const started = await startRun(c.env, organizationId, body.workflowName, body.input ?? {});
    const waitMs = body.timeout ?? Number(c.env.RUN_WAIT_DEFAULT_MS);
    const run = await settleRun(c.env, await getRunOrThrow(c.env, organizationId, started.workflowId), waitMs, false);
    if (isTerminal(run.status)) return c.json(resultPayload(run), 200);
    c.header("location", `/workflow/${encodeURIComponent(run.temporalWorkflowId)}/result`);
    return c.json(resultPayload(run), 202);
  });
}
