import type { Context } from "hono";
import { createMiddleware } from "hono/factory";
import { z } from "zod";
import { RESET_HOST_TIMEOUT_MS, RESET_PENDING_MS } from "../../../durable-objects/run-stream/reset-mark.ts";
import type { App, AppEnv } from "../../app-env.ts";
import { ApiError } from "../../errors.ts";
import { HostClient, HostRefusedError } from "../../host-client.ts";
import { readJsonOrEmpty } from "../../middleware/json-body/index.ts";
import { type OwnedRunEnv, ownedRun } from "../../middleware/owned-run/index.ts";
import { runStream } from "../../run-stream-client.ts";
import { notStartedYet, runNotStarted } from "../../services/runs.ts";
import { runResetEvent } from "../../shared/run-events.ts";
import { type PinnedRunEnv, parseWorkflowIdParam, pinnedRunParam } from "./params.ts";
import { deprecatedUnless } from "./stop.ts";

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
type ResetBodyEnv = AppEnv & { Variables: { resetBody: z.infer<typeof resetBody> } };

/** The id and the body, both 400 before the ownership read. */
const resetRequest = createMiddleware<ResetBodyEnv>(async (c, next) => {
  parseWorkflowIdParam(c.req.param("id")!);
  c.set("resetBody", await readJsonOrEmpty(c, resetBody));
  await next();
});

async function reset(c: Context<PinnedRunEnv & ResetBodyEnv & OwnedRunEnv>): Promise<Response> {
  const pinnedRunId = c.get("pinnedRunId");
  const body = c.get("resetBody");
  // Ownership only (ownedRun, read near the Worker); the host decides whether the run can be reset.
  const organizationId = c.get("auth").organizationId;
  const { workflowId, run } = c.get("ownedRun");
  // The run's DO marks the reset pending, then (metered) holds what a start of the run's kind
  // would, before the host is asked: the replaced run's end, which Temporal sends when it
  // terminates it, may reach the DO before this route records the new run, and must not settle
  // the reset's hold (durable-objects/run-stream/reset-mark.ts).
  const stub = runStream(c.env, workflowId);
  const hold = await stub.holdForReset({ organizationId, workflowId, runUuid: run.id, ...(pinnedRunId ? { runId: pinnedRunId } : {}) });
  if (!hold.ok && "notStarted" in hold) throw runNotStarted(run);
  if (!hold.ok && "openRunsLimit" in hold) {
    throw new ApiError(
      "too_many_open_runs",
      `the run has ended, and a reset would open it again; the organization has ${hold.openRunsLimit} runs that have not ended, the most it may have open at once; reset it once some end, or stop some`,
    );
  }
  if (!hold.ok) {
    throw new ApiError(
      "insufficient_credits",
      `this reset needs ${hold.amount} credits available and the organization has ${hold.available}; add credits to continue`,
    );
  }
  let result: Awaited<ReturnType<HostClient["reset"]>>;
  try {
    result = await new HostClient(c.env).reset(workflowId, { ...body, runId: pinnedRunId }, RESET_HOST_TIMEOUT_MS);
  } catch (err) {
    // The host refused (it answered a 4xx: no such step, step not completed, run not found, or a
    // refusal the edge has no code for): it reset nothing, so the hold goes back as it was and the
    // mark ends. Any other failure leaves the outcome unknown (host unreachable, its 500, an answer
    // we cannot read): the reset may have started a run, so the hold stays; a retry of the reset
    // finds it in place, and the DO settles the mark with the host if nobody else does.
    // (Unmetered too: nothing to put back, but the reset's mark ends.)
    if (err instanceof HostRefusedError) {
      await stub.undoResetHold(workflowId);
      // A run Temporal does not have yet (the edge accepted it, its start is being retried) has nothing to reset yet.
      throw notStartedYet(err, run);
    }
    // Not host_unavailable's "retry after 5 s": a blind retry could reset the new run again (and
    // hold for it again). The caller reads the run's status first; the DO settles the mark meanwhile.
    // host_error here is no refusal of the host's (something in front of it answered, or an answer
    // the edge cannot read), and internal_error the host's own 500 (an error it has no code for,
    // which may come after Temporal reset the run): the outcome is unknown too.
    if (err instanceof ApiError && (err.code === "host_unavailable" || err.code === "host_error" || err.code === "internal_error")) {
      throw new ApiError(
        "reset_outcome_unknown",
        `the workflow host did not confirm the reset (${err.message}); it may still take effect. Read GET /workflow/${workflowId}/status ` +
          `within ${RESET_PENDING_MS / 1000} s: a new runId means it did; reset again only if it did not`,
        undefined,
        undefined,
        workflowId,
      );
    }
    throw err;
  }
  // Recorded before we answer: a status or stream request right after this sees the new run.
  try {
    await stub.record(workflowId, [runResetEvent(result.runId, result.resetFromRunId)]);
  } catch (err) {
    // Temporal has reset the run: that is the answer, whatever became of our record of it. An
    // error here would be retried by resetting the new run again. The reset's mark stays pending,
    // and the run's DO settles it with the host (reset-mark.ts), as when the host's answer is lost.
    console.warn(
      JSON.stringify({
        level: "warn",
        message: "a reset the host confirmed was not recorded; the run's DO settles it with the host",
        workflowId,
        runId: result.runId,
        error: String(err),
      }),
    );
  }
  return c.json({ workflowId, runId: result.runId });
}

export function registerReset(app: App) {
  for (const [path, pinned] of [
    ["/workflow/:id/reset", false],
    ["/workflow/:id/runs/:rid/reset", true],
  ] as const) {
    app.post(path, deprecatedUnless(pinned, "reset"), pinnedRunParam, resetRequest, ownedRun(), reset);
  }
}
