import type { LoggedStepOutputs } from "../../../durable-objects/run-stream.ts";
import type { App } from "../../app-env.ts";
import { nearbyReads } from "../../db/client.ts";
import type { Run } from "../../db/schema.ts";
import { findRunById, findWorkflowIdOfRun, listStepRuns } from "../../db/workflow-runs.ts";
import { ApiError, quotedId } from "../../errors.ts";
import { runStream } from "../../run-stream-client.ts";
import { anyCaseUuid } from "../../shared/any-case-uuid.ts";
import { workflowRunDetail } from "./views.ts";

/** The run with this id in the caller's organization; anything else (other tenants too) is 404. */
export async function workflowRunOrThrow(env: Env, organizationId: string, runId: string): Promise<Run> {
  const id = anyCaseUuid.safeParse(runId);
  const run = id.success ? await findRunById(env.DB, organizationId, id.data) : null;
  if (!run) throw new ApiError("run_not_found", `no workflow run ${quotedId(runId)}`);
  return run;
}

/**
 * The workflow id (so the RunStream DO) of the caller's run with this UUID (any letter case), for
 * the run's stream, with the UUID as stored.
 * Read through a D1 session that may be served by a read replica near the Worker (the id never
 * changes once written, so any replica that has the row is right); a replica that has not seen a
 * fresh row yet is answered by the primary. The DO then checks the row against the primary.
 * docs/architecture.md, "Where each part lives in production".
 */
export async function workflowIdOfRun(env: Env, organizationId: string, runId: string): Promise<{ workflowId: string; runUuid: string }> {
  const id = anyCaseUuid.safeParse(runId);
  if (id.success) {
    const replica = await findWorkflowIdOfRun(nearbyReads(env.DB), organizationId, id.data);
    const workflowId = replica ?? (await findWorkflowIdOfRun(env.DB, organizationId, id.data));
    // The UUID as stored (lower case): the DO compares it exactly.
    if (workflowId) return { workflowId, runUuid: id.data };
  }
  throw new ApiError("run_not_found", `no workflow run ${quotedId(runId)}`);
}

/** The run's detail; an output too large for its row (the run's, or a step attempt's) is read from its RunStream's log. */
export async function detailOf(env: Env, run: Run) {
  const [steps, output] = await Promise.all([
    listStepRuns(env.DB, run.id),
    run.outputInLog && run.temporalRunId ? runStream(env, run.temporalWorkflowId).loggedOutput(run.temporalRunId) : run.output,
  ]);
  const inLog = steps.filter((s) => s.outputsInLog);
  if (inLog.length > 0) {
    const logged: LoggedStepOutputs[] = await runStream(env, run.temporalWorkflowId).loggedStepOutputs(
      inLog.map((s) => ({ runId: s.temporalRunId, activityId: s.stepId, attempt: s.attempt })),
    );
    inLog.forEach((step, i) => {
      const read = logged[i];
      const outputs = read !== undefined && "outputs" in read ? (read.outputs ?? null) : null;
      step.outputs = outputs;
      // None read: past the per-read limit, or outputs the host left out of the step event (past
      // its MAX_STEP_OUTPUT_BYTES, so the log has none). outputsInLog stays set and the view says `outputsOmitted`.
      step.outputsInLog = outputs === null;
    });
  }
  return workflowRunDetail({ ...run, output }, steps);
}

/** GET /api/v1/workflow-runs/:runId: the run with its activity runs (one per attempt). */
export function registerDetail(app: App) {
  app.get("/api/v1/workflow-runs/:runId", async (c) => {
    const run = await workflowRunOrThrow(c.env, c.get("auth").organizationId, c.req.param("runId"));
    return c.json(await detailOf(c.env, run));
  });
}
