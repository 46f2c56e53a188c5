/**
 * Starting runs and settling their state: the logic every API family shares.
 * The edge writes a run row as `scheduled` before asking the host to start it, and removes it if
 * the start fails, so no row pretends to be scheduled for a run Temporal never saw. Every later
 * change goes through the run's RunStream DO.
 */
import { aggregate, type Attribute } from "../shared/aggregations.ts";
import { isTerminal, type RunStatus } from "../shared/run-status.ts";
import { traceKey } from "../../durable-objects/trace.ts";
import type { RunEvent, RunResultResponse } from "../shared/host-api.ts";
import { runFinishedEvent, runStartedEvent } from "../shared/run-events.ts";
import { ApiError } from "../errors.ts";
import { HostClient } from "../host-client.ts";
import { recordRunEvents, runStream } from "../run-stream-client.ts";
import { reserveCredits, releaseCreditsStatement } from "../db/credits.ts";
import { deleteUnstartedRunStatement, findRunByWorkflowId, insertScheduledRun } from "../db/runs.ts";
import { findRunnableWorkflow } from "../db/workflows.ts";
import type { Run, Workflow } from "../db/schema.ts";
import { assertValidInput } from "../routes/workflow/input-validation.ts";

/** The host blocks at most this long per result call; longer waits are several calls. */
const HOST_RESULT_WAIT_SLICE_MS = 110_000;

export interface StartedRun {
  workflowId: string;
  runId: string;
  status: RunStatus;
}

/** Credits a code workflow run holds while it runs (its token use is not known in advance). */
const DEFAULT_CODE_RUN_CREDIT_HOLD = 20_000;

export const codeRunCreditHold = (env: Env) => Number(env.CODE_RUN_CREDIT_HOLD) || DEFAULT_CODE_RUN_CREDIT_HOLD;

/** Starts a published code workflow by name (the Workflow API and the Workflow Runs API). */
export async function startRun(
  env: Env,
  organizationId: string,
  workflowName: string,
  input: unknown,
  options: Pick<StartOptions, "workflowId"> = {},
): Promise<StartedRun> {
  const workflow = await findRunnableWorkflow(env.DB, organizationId, { name: workflowName });
  if (!workflow) throw new ApiError("workflow_not_found", `no published workflow named "${workflowName}"; GET /workflow/catalog lists them`);
  assertValidInput(workflow, input);
  return startWorkflowRun(env, organizationId, workflow, input, { creditHold: codeRunCreditHold(env), workflowId: options.workflowId });
}

export interface StartOptions {
  /** Credits to hold until the run ends (metered organizations only): the most it may be charged. */
  creditHold: number;
  /** Environment overrides for the run's activities (Workflow Runs API); only names are stored. */
  envs?: Record<string, string>;
  /** What the host starts, when it is not the catalog workflow itself (prompt workflows). */
  host?: { workflowName: string; input: unknown; executionTimeoutMs?: number };
  /** The caller's workflow id (Workflow API); default `<name>-<uuid>`. A taken id is 409 workflow_id_in_use. */
  workflowId?: string;
}

/**
 * Holds credits, writes the `scheduled` row, and asks the host to start the run. Any failure
 * undoes what came before it: no orphan row, no stuck hold.
 */
export async function startWorkflowRun(env: Env, organizationId: string, workflow: Workflow, input: unknown, options: StartOptions): Promise<StartedRun> {
  const hold = await reserveCredits(env.DB, organizationId, options.creditHold);
  if (!hold.ok) {
    throw new ApiError(
      "insufficient_credits",
      `this run needs ${options.creditHold} credits available and the organization has ${hold.available}; add credits to continue`,
    );
  }
  const creditHold = hold.metered ? options.creditHold : 0;
  const id = crypto.randomUUID();
  const workflowId = options.workflowId ?? `${workflow.kind === "prompt" ? workflow.id : workflow.name}-${id}`;
  const undo = () =>
    env.DB.batch([deleteUnstartedRunStatement(env.DB, id), ...(creditHold > 0 ? [releaseCreditsStatement(env.DB, organizationId, creditHold)] : [])]);
  try {
    await insertScheduledRun(env.DB, {
      id,
      organizationId,
      workflowId: workflow.id,
      workflowName: workflow.name,
      temporalWorkflowId: workflowId,
      input,
      creditHold,
      envNames: options.envs ? Object.keys(options.envs) : null,
    });
  } catch (err) {
    if (creditHold > 0) await releaseCreditsStatement(env.DB, organizationId, creditHold).run();
    // The unique index on the workflow id is what makes two concurrent starts of one id one run.
    if (isUniqueViolation(err)) throw new ApiError("workflow_id_in_use", `a run with workflow id "${workflowId}" already exists; a workflow id names one run`, undefined, undefined, workflowId);
    throw err;
  }
  let runId: string;
  try {
    ({ runId } = await new HostClient(env).start({
      workflowId,
      workflowName: options.host?.workflowName ?? workflow.name,
      input: options.host ? options.host.input : input,
      executionTimeoutMs: options.host?.executionTimeoutMs,
      envs: options.envs && Object.keys(options.envs).length > 0 ? options.envs : undefined,
    }));
  } catch (err) {
    await undo();
    throw err;
  }
  await recordRunEvents(env, workflowId, [runStartedEvent(runId)]);
  return { workflowId, runId, status: "running" };
}

function isUniqueViolation(err: unknown): boolean {
  for (let e: unknown = err; e instanceof Error; e = e.cause) if (/UNIQUE constraint failed/i.test(e.message)) return true;
  return false;
}

export async function getRunOrThrow(env: Env, organizationId: string, workflowId: string): Promise<Run> {
  const run = await findRunByWorkflowId(env.DB, organizationId, workflowId);
  if (!run) throw new ApiError("run_not_found", `no run with workflowId "${workflowId}"`);
  return run;
}

/** Stops, terminations, signals and updates need a run that has not ended: else 409. */
export function assertRunOpen(run: Run, what: string): void {
  if (isTerminal(run.status)) {
    throw new ApiError("run_finished", `run ${run.temporalWorkflowId} already ended (${run.status}); it takes no ${what}`);
  }
}

/**
 * Brings a non-terminal row up to date with Temporal (via the host), waiting up to `waitMs` for
 * the run to close. A terminal row is returned as is. If the host cannot be reached the row is
 * returned unchanged when `tolerateHostDown`, so reads keep working while the host restarts.
 */
export async function settleRun(env: Env, run: Run, waitMs = 0, tolerateHostDown = true): Promise<Run> {
  if (isTerminal(run.status)) return run;
  const host = new HostClient(env);
  const deadline = Date.now() + waitMs;
  let result: RunResultResponse;
  try {
    do {
      result = await host.result(run.temporalWorkflowId, Math.min(HOST_RESULT_WAIT_SLICE_MS, Math.max(0, deadline - Date.now())));
    } while (!isTerminal(result.status) && Date.now() < deadline);
  } catch (err) {
    if (tolerateHostDown && err instanceof ApiError && err.code === "host_unavailable") return run;
    throw err;
  }
  const events: RunEvent[] = [];
  if (run.status === "scheduled") events.push(runStartedEvent(result.runId));
  if (isTerminal(result.status)) events.push(runFinishedEvent(result));
  if (events.length === 0) return run;
  await recordRunEvents(env, run.temporalWorkflowId, events);
  return (await findRunByWorkflowId(env.DB, run.organizationId, run.temporalWorkflowId)) ?? run;
}

/**
 * The Workflow API's result payload for a run row. Attributes come from the run's log (its steps
 * publish them as they go), so a failed run keeps the ones it collected; aggregations are derived.
 */
export async function resultPayload(env: Env, run: Run) {
  const attributes: Attribute[] = await runStream(env, run.temporalWorkflowId).attributes();
  return {
    workflowId: run.temporalWorkflowId,
    runId: run.temporalRunId,
    status: run.status,
    input: run.input,
    output: run.output ?? null,
    // Written by the run's RunStream to R2 when the run ends; the API route reads it back.
    trace: isTerminal(run.status)
      ? { destinations: { r2: traceKey(run.temporalWorkflowId, run.temporalRunId ?? ""), api: `/workflow/${run.temporalWorkflowId}/trace-log` } }
      : null,
    attributes,
    aggregations: aggregate(attributes),
    error: run.error ?? null,
  };
}
