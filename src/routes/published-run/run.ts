import type { App } from "../../app-env.ts";
import { readOptionalJson } from "../../middleware/json-body/index.ts";
import { neverStartedRunError, promptOutcome, promptRunMaxMs, promptStartCommand } from "../../services/prompt-runs.ts";
import { startAndWaitInRegion } from "../../services/runs.ts";
import { isTerminal } from "../../shared/run-status.ts";

/** Waiting this much past the run's own limit lets Temporal's timeout, not ours, end it. */
const WAIT_MARGIN_MS = 15_000;

/**
 * POST /api/v1/run/{workflow_id}: runs a published prompt workflow and answers with its text
 * (and citations, when the workflow searches the web) once the model is done.
 */
export function registerPublishedRun(app: App) {
  app.post("/api/v1/run/:workflowId", async (c) => {
    const organizationId = c.get("auth").organizationId;
    const command = promptStartCommand(organizationId, c.req.param("workflowId"), await readOptionalJson(c), c.get("idempotency"));
    const maxMs = promptRunMaxMs(c.env);
    // One call into the home region: the run's DO starts it and waits for its outcome.
    const { started, run, waitFailed } = await startAndWaitInRegion(c.env, command, maxMs + WAIT_MARGIN_MS);
    const prompt = started.prompt!;
    if (started.runId === null || (waitFailed && !isTerminal(run.status))) {
      c.header("x-run-id", started.workflowId);
      // An Idempotency-Key replay of a run that ended before Temporal ever had it: failed, as its end says.
      if (started.runId === null && isTerminal(started.status)) throw neverStartedRunError(run.status, run.error);
      // Accepted, but the host has not confirmed the start yet, or the wait for its outcome failed
      // (not a timeout: it may still be going): the caller follows it by id.
      return c.json({ workflowId: started.workflowId, status: run.status === "running" ? "running" : "scheduled" }, 202);
    }
    // The run's id, to look it up later (Workflow API, Workflow Runs API).
    c.header("x-run-id", run.temporalWorkflowId);
    const outcome = promptOutcome(prompt, run.status, run.output, run.error, maxMs);
    if (!outcome.ok) throw outcome.error;
    return c.json(outcome.body, 200);
  });
}
