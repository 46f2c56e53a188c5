import type { Context } from "hono";
import { z } from "zod";
import type { App, AppEnv } from "../../app-env.ts";
import { holdForReset } from "../../db/credits.ts";
import { ApiError } from "../../errors.ts";
import { HostClient } from "../../host-client.ts";
import { readJsonOrEmpty } from "../../middleware/json-body/index.ts";
import { recordRunEvents } from "../../run-stream-client.ts";
import { codeRunCreditHold, findRunNearby } from "../../services/runs.ts";
import { runResetEvent } from "../../shared/run-events.ts";
import { parsePinnedRunId } from "./history.ts";
import { parseWorkflowIdParam } from "./params.ts";
import { markDeprecated } from "./stop.ts";

export const resetBody = z.object({
  /** The step (activity) to re-run from after: its completion is kept, every later step runs again. */
  stepName: z.string().min(1).max(256),
  reason: z.string().max(1000).optional(),
});

/**
 * POST /workflow/:id/reset (latest run; deprecated as in Output) and POST
 * /workflow/:id/runs/:rid/reset: a Temporal reset to the workflow task completed just after the
 * step's activity completed. Answers the NEW run's id; the workflow's row, its RunStream and its
 * streams follow the new run. 404 `step_not_found`, 409 `step_not_completed`.
 */
async function reset(c: Context<AppEnv>, pinnedRunId: string | undefined): Promise<Response> {
  const workflowId = parseWorkflowIdParam(c.req.param("id")!);
  const body = await readJsonOrEmpty(c, resetBody);
  // Ownership only (read near the Worker); the host decides whether the run can be reset.
  const organizationId = c.get("auth").organizationId;
  const { run } = await findRunNearby(c.env, organizationId, workflowId);
  // A metered organization's reset holds credits like a start, before the host is asked.
  const amount = codeRunCreditHold(c.env);
  const hold = await holdForReset(c.env.DB, organizationId, run.id, amount);
  if (!hold.ok) {
    throw new ApiError(
      "insufficient_credits",
      `this reset needs ${amount} credits available and the organization has ${hold.available}; add credits to continue`,
    );
  }
  let result: Awaited<ReturnType<HostClient["reset"]>>;
  try {
    result = await new HostClient(c.env).reset(workflowId, { ...body, runId: pinnedRunId });
  } catch (err) {
    // The host refused (a 4xx: no such step, step not completed, run not found): the hold goes
    // back as it was. If the outcome is unknown (host unreachable, an answer we cannot read), the
    // reset may have started a run, so the hold stays; a retry of the reset finds it in place.
    if (hold.held && !(err instanceof ApiError && (err.code === "host_unavailable" || err.code === "host_error"))) await hold.undo.run();
    throw err;
  }
  // Recorded before we answer: a status or stream request right after this sees the new run.
  await recordRunEvents(c.env, workflowId, [runResetEvent(result.runId, result.resetFromRunId)]);
  if (!pinnedRunId) markDeprecated(c, "reset");
  return c.json({ workflowId, runId: result.runId });
}

export function registerReset(app: App) {
  app.post("/workflow/:id/reset", (c) => reset(c, undefined));
  app.post("/workflow/:id/runs/:rid/reset", (c) => reset(c, parsePinnedRunId(c.req.param("rid"))));
}
