import type { App } from "../../app-env.ts";
import { readJson } from "../../middleware/json-body/index.ts";
import { isTerminal } from "../../shared/run-status.ts";
import { getRunOrThrow, resultPayload, settleRun, startRun } from "../../services/runs.ts";
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
    const started = await startRun(c.env, organizationId, request.workflowName, request.input ?? {}, c.get("idempotency"));
    const waitMs = request.timeout ?? Number(c.env.RUN_WAIT_DEFAULT_MS);
    const stream = await mintStreamToken(c.env.STREAM_TOKEN_SECRET, { organizationId, workflowId: started.workflowId });
    const run = await settleRun(c.env, await getRunOrThrow(c.env, organizationId, started.workflowId), waitMs, false);
    const body = { ...(await resultPayload(c.env, run)), streamToken: stream.token, streamTokenExpiresAt: stream.expiresAt };
    if (isTerminal(run.status)) return c.json(body, 200);
    c.header("location", `/workflow/${encodeURIComponent(run.temporalWorkflowId)}/result`);
    return c.json(body, 202);
  });
}
