import type { App } from "../../app-env.ts";
import { readJson } from "../../middleware/json-body/index.ts";
import { isTerminal } from "../../shared/run-status.ts";
import { resultPayload, runToOutcome } from "../../services/runs.ts";
import { mintStreamToken } from "../../stream-tokens.ts";
import { runWorkflowBody } from "./schemas.ts";

/**
 * POST /workflow/run: starts a run and waits for its result. When `timeout` (ms, default
 * RUN_WAIT_DEFAULT_MS) runs out first, answers 202 Accepted with the same payload shape (status
 * `running`, output null) and a Location header to poll: the run goes on, nothing is lost.
 */
export function registerRun(app: App) {
  app.post("/workflow/run", async (c) => {
    const request = await readJson(c, runWorkflowBody);
    const organizationId = c.get("auth").organizationId;
    const waitMs = request.timeout ?? Number(c.env.RUN_WAIT_DEFAULT_MS);
    // One call into the home region: the run's DO starts it and waits for its outcome.
    const { run, attributes } = await runToOutcome(c.env, organizationId, request.workflowName, request.input ?? {}, waitMs, { idempotency: c.get("idempotency") });
    const stream = await mintStreamToken(c.env.STREAM_TOKEN_SECRET, { organizationId, workflowId: run.temporalWorkflowId });
    const body = { ...(await resultPayload(c.env, run, attributes)), streamToken: stream.token, streamTokenExpiresAt: stream.expiresAt };
    if (isTerminal(run.status)) return c.json(body, 200);
    c.header("location", `/workflow/${encodeURIComponent(run.temporalWorkflowId)}/result`);
    return c.json(body, 202);
  });
}
