/**
 * Builders of the run events both the host and the edge emit. The same source key from both sides
 * is what makes a second delivery a duplicate.
 */
import type { RunEventOf, RunResultResponse } from "./host-api.ts";

export function runStartedEvent(runId: string, at = new Date().toISOString()): RunEventOf<"run.started"> {
  return { sourceKey: `run:${runId}:started`, type: "run.started", at, data: { runId } };
}

export function runFinishedEvent(result: Omit<RunResultResponse, "workflowId">): RunEventOf<"run.finished"> {
  return {
    sourceKey: `run:${result.runId}:finished`,
    type: "run.finished",
    at: result.closeTime ?? new Date().toISOString(),
    data: {
      runId: result.runId,
      status: result.status,
      output: result.output,
      error: result.error,
      ...(result.errorDetails ? { errorDetails: result.errorDetails } : {}),
      newRunId: result.newRunId ?? null,
    },
  };
}

/** The run a Temporal reset started: the workflow's row and streams follow it from now on. */
export function runResetEvent(runId: string, resetFromRunId: string, at = new Date().toISOString()): RunEventOf<"run.started"> {
  return { sourceKey: `run:${runId}:started`, type: "run.started", at, data: { runId, resetFromRunId } };
}
