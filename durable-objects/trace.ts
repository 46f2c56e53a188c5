import type { SerializedHistoryEvent } from "../src/shared/history-events.ts";

/**
 * The execution trace of a finished run, built from its history log: one entry per step
 * (activity) with input, output, start and end time, attempts and error.
 */

export interface TraceStep {
  stepName: string;
  activityId: string | null;
  status: "scheduled" | "running" | "completed" | "failed" | "timed_out" | "cancelled";
  input: unknown[] | null;
  output: unknown;
  startedAt: string | null;
  endedAt: string | null;
  attempts: number;
  error: string | null;
  /** LLM usage attributes recorded by the step, when it made LLM calls. */
  usage: unknown[];
}

export interface RunTrace {
  workflowId: string;
  runId: string;
  workflowName: string | null;
  status: string;
  startedAt: string | null;
  closedAt: string | null;
  output: unknown;
  error: string | null;
  steps: TraceStep[];
}

const STEP_END: Record<string, TraceStep["status"]> = {
  EVENT_TYPE_ACTIVITY_TASK_COMPLETED: "completed",
  EVENT_TYPE_ACTIVITY_TASK_FAILED: "failed",
  EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: "timed_out",
  EVENT_TYPE_ACTIVITY_TASK_CANCELED: "cancelled",
};

export function buildTrace(
  run: { workflowId: string; runId: string; status: string; output: unknown; error: string | null },
  events: SerializedHistoryEvent[],
  /** Attributes the steps published, by activity id. */
  attributesByActivity: ReadonlyMap<string, unknown[]> = new Map(),
): RunTrace {
  const steps = new Map<string, TraceStep>();
  let workflowName: string | null = null;
  for (const event of events) {
    const a = event.attributes;
    if (event.eventType === "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED") {
      workflowName = ((a.workflowType as { name?: string } | undefined)?.name) ?? null;
    } else if (event.eventType === "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED") {
      steps.set(event.eventId, {
        stepName: (a.activityType as { name?: string } | undefined)?.name ?? "unknown",
        activityId: (a.activityId as string | undefined) ?? null,
        status: "scheduled",
        input: event.payloads?.input ?? null,
        output: null,
        startedAt: null,
        endedAt: null,
        attempts: 0,
        error: null,
        usage: attributesByActivity.get(String(a.activityId)) ?? [],
      });
    } else if (event.eventType === "EVENT_TYPE_ACTIVITY_TASK_STARTED") {
      const step = steps.get(String(a.scheduledEventId));
      if (step) {
        step.status = "running";
        step.startedAt = event.eventTime;
        step.attempts = Number(a.attempt ?? 1);
      }
    } else if (event.eventType in STEP_END) {
      const step = steps.get(String(a.scheduledEventId));
      if (step) {
        step.status = STEP_END[event.eventType]!;
        step.endedAt = event.eventTime;
        step.output = event.payloads?.result ?? null;
        step.error = ((a.failure as { message?: string } | undefined)?.message) ?? null;
      }
    }
  }
  return {
    workflowId: run.workflowId,
    runId: run.runId,
    workflowName,
    status: run.status,
    startedAt: events[0]?.eventTime ?? null,
    closedAt: events.at(-1)?.eventTime ?? null,
    output: run.output ?? null,
    error: run.error,
    steps: [...steps.values()],
  };
}

export const traceKey = (workflowId: string, runId: string) => `traces/${workflowId}/${runId}.json`;
