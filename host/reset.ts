/**
 * Temporal reset to just after a step: the run's history is searched for the last scheduling of
 * that step's activity, its completion, and the workflow task completed right after it; the
 * workflow is reset there (WorkflowService.ResetWorkflowExecution). The old run is terminated if
 * it was still going; the new run replays up to that point and runs every later step again.
 */
import type { Client } from "@temporalio/client";
import type { temporal } from "@temporalio/proto";
import { stepNameOf } from "../src/shared/output-history.ts";

type HistoryEvent = temporal.api.history.v1.IHistoryEvent;
type Long = NonNullable<temporal.api.workflowservice.v1.IResetWorkflowExecutionRequest["workflowTaskFinishEventId"]>;

export class StepNotFoundError extends Error {}
export class StepNotCompletedError extends Error {}
export class RunNotFoundError extends Error {}

/** A step is named by its activity name, or by what follows `#` in it (Output's `workflow#step`). */
const isStep = (activityName: string | null | undefined, stepName: string) =>
  !!activityName && (activityName === stepName || stepNameOf(activityName) === stepName);

/** The event id of the WORKFLOW_TASK_COMPLETED to reset to, for the last run of `stepName`. */
export function resetEventIdFor(events: HistoryEvent[], stepName: string): number {
  const scheduled = events.findLast((e) => isStep(e.activityTaskScheduledEventAttributes?.activityType?.name, stepName));
  if (!scheduled) throw new StepNotFoundError(`the run has no step named "${stepName}"`);
  const scheduledId = String(scheduled.eventId);
  const completed = events.findLast((e) => String(e.activityTaskCompletedEventAttributes?.scheduledEventId ?? "") === scheduledId);
  if (!completed) throw new StepNotCompletedError(`step "${stepName}" has not completed`);
  const completedId = Number(completed.eventId);
  const taskCompleted = events.find((e) => e.workflowTaskCompletedEventAttributes && Number(e.eventId) > completedId);
  if (!taskCompleted) throw new StepNotCompletedError(`step "${stepName}" completed but the workflow has not taken it in yet`);
  return Number(taskCompleted.eventId);
}

/**
 * `requestId`: Temporal's duplicate check. A reset sent again with the same id, while the run it
 * made is still the workflow's current one, answers with that run instead of making another.
 */
export async function resetToAfterStep(
  client: Client,
  workflowId: string,
  stepName: string,
  reason: string | undefined,
  runId: string | undefined,
  requestId: string = crypto.randomUUID(),
) {
  let resolvedRunId: string;
  let events: HistoryEvent[];
  try {
    // Pin the run first, so the history read and the reset name the same run.
    resolvedRunId = runId ?? (await client.workflow.getHandle(workflowId).describe()).runId;
    events = (await client.workflow.getHandle(workflowId, resolvedRunId).fetchHistory()).events ?? [];
  } catch (err) {
    // gRPC NOT_FOUND (an unknown run id) and INVALID_ARGUMENT (a malformed one).
    const code = (err as { code?: number }).code;
    if (code === 5 || code === 3) throw new RunNotFoundError(`workflow ${workflowId} has no run ${runId ?? ""}`.trim());
    throw err;
  }
  const eventId = resetEventIdFor(events, stepName);
  try {
    const response: temporal.api.workflowservice.v1.IResetWorkflowExecutionResponse = await client.workflowService.resetWorkflowExecution({
      namespace: client.options.namespace,
      workflowExecution: { workflowId, runId: resolvedRunId },
      reason: reason || `reset to re-run from after step "${stepName}"`,
      // An int64 in the proto; protobufjs encodes a plain number (event ids are far below 2^53).
      workflowTaskFinishEventId: eventId as unknown as Long,
      requestId,
    });
    if (!response.runId) throw new Error("Temporal did not report the new run's id");
    return { workflowId, runId: response.runId, resetFromRunId: resolvedRunId };
  } catch (err) {
    if ((err as { code?: number }).code === 5) throw new RunNotFoundError(`workflow ${workflowId} has no run ${resolvedRunId}`);
    throw err;
  }
}
