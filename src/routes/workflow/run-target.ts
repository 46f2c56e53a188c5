/**
 * The run a `/workflow/:id/...` route names: the caller's organization's run with that workflow
 * id, and on the run-pinned routes (`/workflow/:id/runs/:rid/...`) its run `rid`: the row's
 * current run, or an earlier one its log knows (a run a reset replaced, or one that continued as
 * new), else 404. Another organization's run is answered exactly like one that does not exist
 * (404). One call into the home region (the run's DO reads the row, settled with Temporal when
 * not final, or the earlier run from its log), after an ownership read near the Worker
 * (ownedRun: a D1 read replica; the primary only for a run too new for it): any tenant can name
 * any id, and naming a DO creates it, so an unknown or another organization's id is refused
 * before it reaches one.
 */
import type { Context } from "hono";
import { createMiddleware } from "hono/factory";
import type { AppEnv } from "../../app-env.ts";
import type { Run } from "../../db/schema.ts";
import type { OwnedRunEnv } from "../../middleware/owned-run/index.ts";
import { readRun } from "../../services/runs.ts";
import type { ReadOptions, RunView } from "../../../durable-objects/run-stream/run-reader.ts";
import { parsePinnedRunId, parseWorkflowIdParam } from "./params.ts";

type TargetRunIdEnv = AppEnv & { Variables: { targetRunId: string | undefined } };

/** Hono generics of a run route's handler: behind `targetParams` and `ownedRun()`. */
export type RunTargetEnv = TargetRunIdEnv & OwnedRunEnv;

/**
 * The `:id`, then on a pinned route the `:rid` (400 each, in that order), before the ownership
 * read: `app.get(path, targetParams, ownedRun(), handler)`.
 */
export const targetParams = createMiddleware<TargetRunIdEnv>(async (c, next) => {
  parseWorkflowIdParam(c.req.param("id") ?? "");
  c.set("targetRunId", parsePinnedRunId(c.req.param("rid")));
  await next();
});

/** The named run; `earlier` when the pinned run is not the workflow's current one (RunView). */
export async function targetRunView<E extends RunTargetEnv>(c: Context<E>, options: ReadOptions = {}): Promise<RunView> {
  const runId = c.get("targetRunId");
  const { workflowId } = c.get("ownedRun");
  return readRun(c.env, c.get("auth").organizationId, workflowId, runId === undefined ? options : { ...options, runId });
}

export async function targetRun<E extends RunTargetEnv>(c: Context<E>, options: ReadOptions = {}): Promise<Run> {
  return (await targetRunView(c, options)).run;
}

/** Paths of a run route: the shortcut and its run-pinned form. */
export const unpinnedAndPinned = (suffix: string) => [`/workflow/:id/${suffix}`, `/workflow/:id/runs/:rid/${suffix}`] as const;
