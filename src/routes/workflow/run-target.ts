/**
 * The run a `/workflow/:id/...` route names: the caller's organization's run with that workflow
 * id, and on the run-pinned routes (`/workflow/:id/runs/:rid/...`) only if `rid` is its run id.
 * Another organization's run is answered exactly like one that does not exist (404). One call
 * into the home region (the run's DO reads the row, settled with Temporal when not final), after
 * an ownership read near the Worker (a D1 read replica; the primary only for a run too new for
 * it): any tenant can name any id, and naming a DO creates it, so an unknown or another
 * organization's id is refused before it reaches one.
 */
import type { Context } from "hono";
import type { AppEnv } from "../../app-env.ts";
import type { Run } from "../../db/schema.ts";
import { ApiError } from "../../errors.ts";
import { findRunNearby, readRun } from "../../services/runs.ts";
import type { ReadOptions, RunView } from "../../../durable-objects/run-stream/run-reader.ts";
import { parseRunIdParam, parseWorkflowIdParam } from "./params.ts";

export async function targetRunView(c: Context<AppEnv>, options: ReadOptions = {}): Promise<RunView> {
  const workflowId = parseWorkflowIdParam(c.req.param("id") ?? "");
  const rawRid = c.req.param("rid");
  const runId = rawRid === undefined ? undefined : parseRunIdParam(rawRid);
  const organizationId = c.get("auth").organizationId;
  await findRunNearby(c.env, organizationId, workflowId);
  const view = await readRun(c.env, organizationId, workflowId, options);
  if (runId !== undefined && view.run.temporalRunId !== runId) {
    throw new ApiError("run_not_found", `run "${runId}" not found for workflow "${workflowId}"`);
  }
  return view;
}

export async function targetRun(c: Context<AppEnv>, options: ReadOptions = {}): Promise<Run> {
  return (await targetRunView(c, options)).run;
}

/** Paths of a run route: the shortcut and its run-pinned form. */
export const unpinnedAndPinned = (suffix: string) => [`/workflow/:id/${suffix}`, `/workflow/:id/runs/:rid/${suffix}`] as const;
