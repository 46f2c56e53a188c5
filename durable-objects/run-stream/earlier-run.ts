/**
 * A run of the workflow that the D1 row no longer follows (a reset replaced it, or it continued
 * as new), as the run-pinned status, result and input routes answer it: from the run's log, in
 * the same call into the home region as a read of the current run (RunReader.read). The log has
 * each run's `run.started` and `run.finished` (status, output, error, close time), its history
 * (the start event's input) and the attributes its steps recorded.
 */
import type { Run } from "../../src/db/schema.ts";
import type { SerializedHistoryEvent } from "../../src/shared/history-events.ts";
import type { EventLog } from "./event-log.ts";
import { rowErrorDetails } from "./row-limits.ts";
import type { RunView } from "./run-reader.ts";

export type EarlierRunLog = Pick<
  EventLog,
  "knowsRun" | "latestRunId" | "finished" | "finishedAt" | "historyEvent" | "startedAt" | "replacedAt" | "usageAttributes"
>;

/**
 * The input of a run: a continue-as-new's run was started with its own arguments (its start
 * event says so); any other run of the workflow, a reset's included, has the row's input.
 */
function inputOf(started: SerializedHistoryEvent | null, rowInput: unknown): unknown {
  const continued = started?.attributes.continuedExecutionRunId;
  const args = started?.payloads?.input;
  return typeof continued === "string" && continued !== "" && args && args.length > 0 ? args[0] : rowInput;
}

/**
 * The input a run-pinned read of the row's CURRENT run answers: its own arguments when a
 * continue-as-new started it (as Output's pinned input route answers; the unpinned one, like the
 * row, keeps the chain's first input), else the row's.
 */
export function pinnedRunInput(log: Pick<EventLog, "historyEvent">, runId: string, rowInput: unknown): unknown {
  return inputOf(log.historyEvent(runId, 1), rowInput);
}

/**
 * `runId` of the workflow whose current row is `current`, from the log; null when the log does
 * not know the run. `earlier` is set unless it is the log's latest run (a row a moment behind
 * its log). Fields that are the workflow's rather than one run's (ids, name, created, totals)
 * stay the row's.
 */
export function earlierRunView(log: EarlierRunLog, current: Run, runId: string, withAttributes: boolean): RunView | null {
  if (!log.knowsRun(runId)) return null;
  const outcome = log.finished(runId);
  // Temporal terminates the run a reset replaces if it still ran; the relay may not have sent its end yet.
  const replacedAt = outcome ? null : log.replacedAt(runId);
  const started = log.historyEvent(runId, 1);
  const completedAt = outcome ? log.finishedAt(runId) : replacedAt;
  const run: Run = {
    ...current,
    temporalRunId: runId,
    status: outcome?.status ?? (replacedAt ? "terminated" : "running"),
    input: inputOf(started, current.input),
    output: outcome?.output ?? null,
    outputInLog: false,
    error: outcome?.error ?? null,
    errorDetails: rowErrorDetails(outcome?.errorDetails),
    waitingSince: null,
    startedAt: log.startedAt(runId) ?? started?.eventTime ?? null,
    completedAt,
    updatedAt: completedAt ?? current.updatedAt,
  };
  return {
    run,
    ...(runId !== log.latestRunId() ? { earlier: true as const } : {}),
    // What the run had when it ended: its own attributes and those of the runs it follows from (kept steps).
    ...(withAttributes ? { attributes: log.usageAttributes(runId).map((r) => r.data.attribute) } : {}),
  };
}
