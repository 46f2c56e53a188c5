import { z } from "zod";
import type { Context } from "hono";
import { createMiddleware } from "hono/factory";
import type { App, AppEnv } from "../../app-env.ts";
import { ApiError } from "../../errors.ts";
import { HostClient } from "../../host-client.ts";
import { readJsonOrEmpty } from "../../middleware/json-body/index.ts";
import { ownedRun } from "../../middleware/owned-run/index.ts";
import { notStartedYet } from "../../services/runs.ts";
import { isTerminal } from "../../shared/run-status.ts";
import type { Run } from "../../db/schema.ts";
import { type RunTargetEnv, targetParams, targetRunView } from "./run-target.ts";

export const terminateBody = z.object({ reason: z.string().max(1000).optional() });

/** Output's sunset date for the unpinned stop/terminate/reset (api/src/index.js). */
export const UNPINNED_SUNSET = "Thu, 16 Jul 2026 00:00:00 GMT";

/** Output's Deprecation / Sunset / Link headers on an unpinned route whose successor is pinned. */
export function markDeprecated<E extends AppEnv>(c: Context<E>, action: string): void {
  c.header("deprecation", "true");
  c.header("sunset", UNPINNED_SUNSET);
  c.header("link", `</workflow/{id}/runs/{rid}/${action}>; rel="successor-version"`);
}

/** The unpinned route's deprecation headers, set first: its errors carry them too (as Output's middleware does). */
export const deprecatedUnless = (pinned: boolean, action: string) =>
  createMiddleware<AppEnv>(async (c, next) => {
    if (!pinned) markDeprecated(c, action);
    await next();
  });

type TerminateBodyEnv = AppEnv & { Variables: { terminateBody: z.infer<typeof terminateBody> } };

/** A terminate's body: 400 before the params and the ownership read. */
const terminateRequest = createMiddleware<TerminateBodyEnv>(async (c, next) => {
  c.set("terminateBody", await readJsonOrEmpty(c, terminateBody));
  await next();
});

/**
 * Output answers stop/terminate of a run that has ended with 404 (Temporal: already completed).
 * A pinned run that is not the workflow's current one (a reset replaced it, or it continued as
 * new) has ended too, and the host acts on the current run: the same 404, nothing is sent.
 */
async function openRunOr404<E extends RunTargetEnv>(c: Context<E>): Promise<Run> {
  // The stored row is enough: a run that closed before the row knew is the host's run_finished, the same 404 (asEnded).
  const { run, earlier } = await targetRunView(c, { settle: false });
  if (earlier || isTerminal(run.status)) throw ended(run);
  return run;
}

export const ended = (run: Run) =>
  new ApiError(
    "run_ended",
    `workflow execution already completed${isTerminal(run.status) ? ` (${run.status})` : ""}; it takes no stop or termination`,
    undefined,
    undefined,
    run.temporalWorkflowId,
  );

/**
 * The host found the run closed in Temporal before the D1 row knew: the same 404. It found no
 * workflow for a run whose start is still being retried: 409 run_not_started (notStartedYet).
 */
function asEnded(err: unknown, run: Run): unknown {
  return err instanceof ApiError && err.code === "run_finished" ? ended(run) : notStartedYet(err, run);
}

/** A terminate's answer, the tenant's and the operator's: the run the host acted on and the reason recorded. */
export const terminatedBody = (stopped: { workflowId: string; runId: string | null }, reason: string | undefined) => ({
  terminated: true as const,
  ...stopped,
  status: "terminated" as const,
  reason: reason ?? null,
});

/**
 * Terminates `run` in Temporal through the host (of its pinned run `runId` when given, else its
 * current one), with `reason` recorded in the run's history: what the tenant terminate does, and
 * the admin API's terminates too (src/routes/admin/runs.ts). The run's end then reaches its D1
 * row, log, credits and webhooks the way every end does (the history relay's push). A run that
 * closed in Temporal before the row knew is 404 run_ended; one whose start is still being retried
 * 409 run_not_started.
 */
export async function terminateRow(env: Env, run: Run, reason: string | undefined, runId?: string) {
  const stopped = await new HostClient(env).terminate(run.temporalWorkflowId, reason, runId).catch((err: unknown) => {
    throw asEnded(err, run);
  });
  // The run the host acted on (the row's may lag behind).
  return { workflowId: run.temporalWorkflowId, runId: stopped.runId ?? run.temporalRunId };
}

/**
 * PATCH /workflow/:id/stop and /workflow/:id/runs/:rid/stop: graceful (Temporal cancellation;
 * the workflow's cleanup runs and the run ends `cancelled`) → 200 `{workflowId, runId}`.
 * POST /workflow/:id/terminate and /workflow/:id/runs/:rid/terminate: immediate, optional
 * `reason` → 200 `{terminated: true, workflowId, runId}`. A run that has ended is 404, from the
 * D1 row when it knows, else from the host, which checks Temporal before it acts. The unpinned
 * routes carry Output's Deprecation, Sunset and Link headers.
 */
export function registerStop(app: App) {
  for (const pinned of [false, true]) {
    const base = pinned ? "/workflow/:id/runs/:rid" : "/workflow/:id";
    app.patch(`${base}/stop`, deprecatedUnless(pinned, "stop"), targetParams, ownedRun(), async (c) => {
      const run = await openRunOr404(c);
      // A pinned run is named to the host, which acts on that run only (as Output's pinned handle
      // does): should it have ended since the row was read (a continue-as-new, a reset), the
      // answer is the same 404 and the workflow's newer run is left alone.
      const stopped = await new HostClient(c.env).cancel(run.temporalWorkflowId, c.get("targetRunId")).catch((err: unknown) => {
        throw asEnded(err, run);
      });
      // The run the host acted on, as Output answers with the run it cancelled (the row's may lag behind).
      return c.json({ workflowId: run.temporalWorkflowId, runId: stopped.runId ?? run.temporalRunId, status: "cancelling" }, 200);
    });

    app.post(`${base}/terminate`, deprecatedUnless(pinned, "terminate"), terminateRequest, targetParams, ownedRun(), async (c) => {
      const { reason } = c.get("terminateBody");
      const run = await openRunOr404(c);
      return c.json(terminatedBody(await terminateRow(c.env, run, reason, c.get("targetRunId")), reason));
    });
  }
}
