import { z } from "zod";
import type { App } from "../../app-env.ts";
import type { Run } from "../../db/schema.ts";
import { findRunById, listStepRuns } from "../../db/workflow-runs.ts";
import { ApiError } from "../../errors.ts";
import { workflowRunDetail } from "./views.ts";

/** The run with this id in the caller's organization; anything else (other tenants too) is 404. */
export async function workflowRunOrThrow(env: Env, organizationId: string, runId: string): Promise<Run> {
  const run = z.uuid().safeParse(runId).success ? await findRunById(env.DB, organizationId, runId) : null;
  if (!run) throw new ApiError("run_not_found", `no workflow run "${runId.slice(0, 100)}"`);
  return run;
}

export async function detailOf(env: Env, run: Run) {
  return workflowRunDetail(run, await listStepRuns(env.DB, run.id));
}

/** GET /api/v1/workflow-runs/:runId: the run with its activity runs (one per attempt). */
export function registerDetail(app: App) {
  app.get("/api/v1/workflow-runs/:runId", async (c) => {
    const run = await workflowRunOrThrow(c.env, c.get("auth").organizationId, c.req.param("runId"));
    return c.json(await detailOf(c.env, run));
  });
}
