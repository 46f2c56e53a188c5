/** The Workflow Runs API's shapes of runs and activity runs. */
import type { Run, StepRun } from "../../db/schema.ts";
import { toWorkflowRunStatus } from "../../shared/run-status.ts";

/** `inputs` is an array of `{name, value}`, one per input field. */
function inputsOf(input: unknown) {
  return input && typeof input === "object" && !Array.isArray(input) ? Object.entries(input).map(([name, value]) => ({ name, value })) : [];
}

/**
 * An activity run's `outputs` as the contract types them, an object or null: a step's result that
 * is a JSON object as it is, any other value (a string, a number, a boolean, a list) as `{value}`,
 * so a client that reads them as an object (a table of fields) gets one.
 */
function activityOutputs(outputs: unknown): Record<string, unknown> | null {
  if (outputs === null || outputs === undefined) return null;
  return typeof outputs === "object" && !Array.isArray(outputs) ? (outputs as Record<string, unknown>) : { value: outputs };
}

/** What a run view needs of a run's row; `inputOmitted`: a list left out an input too large to list (its detail has it). */
type RunViewSource = Pick<Run, "id" | "workflowId" | "workflowName" | "status" | "waitingSince" | "input" | "createdAt" | "updatedAt"> & {
  inputOmitted?: boolean;
};

export function workflowRunView(run: RunViewSource) {
  return {
    id: run.id,
    workflowId: run.workflowId,
    workflowName: run.workflowName,
    status: toWorkflowRunStatus(run.status, run.waitingSince),
    inputs: inputsOf(run.input),
    ...(run.inputOmitted ? { inputsOmitted: true } : {}),
    createdAt: run.createdAt,
    updatedAt: run.updatedAt,
  };
}

/**
 * One attempt of one step. `temporalRunId` (an Outrider addition) names the Temporal run it ran in:
 * after a reset or a continue-as-new the run's detail lists every Temporal run's attempts, and the
 * detail's own `temporalRunId` is the current one. null for an attempt recorded before that was
 * kept whose run had no Temporal run id then.
 */
export function activityRunView(step: StepRun) {
  return {
    id: step.id,
    temporalRunId: step.temporalRunId || null,
    stepId: step.stepId,
    stepName: step.stepName,
    status: step.status,
    outputs: activityOutputs(step.outputs),
    // Outputs this answer left out: over 768 KiB and past the few one detail read takes from the
    // run's log, or past what the host puts in a step event (Temporal's 2 MiB payload limit).
    ...(step.outputsInLog ? { outputsOmitted: true } : {}),
    error: step.error,
    attempt: step.attempt,
    createdAt: step.createdAt,
    updatedAt: step.updatedAt,
  };
}

/**
 * A run with everything the detail route shows: outcome, usage, environment names, the current
 * Temporal run, and the activity runs of every Temporal run the run has had (oldest first).
 */
export function workflowRunDetail(run: Run, steps: StepRun[]) {
  return {
    ...workflowRunView(run),
    temporalRunId: run.temporalRunId,
    outputs: run.output ?? null,
    error: run.error,
    envNames: run.envNames ?? [],
    usage: { costUsd: run.costTotal, tokens: run.tokensTotal, credits: run.creditsCharged },
    startedAt: run.startedAt,
    completedAt: run.completedAt,
    activityRuns: steps.map(activityRunView),
  };
}
