/**
 * What the RunStream DO says to the Worker: results of its RPC methods, and the structured
 * messages it sends each subscriber. The DO never writes SSE: the stream routes frame these
 * messages (src/routes/workflow/history-stream.ts, src/sse/log-stream.ts).
 */
import type { RunEvent, RunEventData } from "../../src/shared/run-event-schema.ts";
import type { SerializedHistoryEvent } from "../../src/shared/history-events.ts";
import type { RunStatus } from "../../src/shared/run-status.ts";

export interface RecordResult {
  accepted: number;
  duplicates: number;
  /** The signed push carrying these events was seen before: nothing was recorded. */
  replayed?: boolean;
  /** No run was accepted through the edge under this workflow id: nothing was recorded, and nothing needs retrying (push-admission.ts). */
  dropped?: boolean;
}

/** What the Worker needs before it opens a stream (404/204 decisions). */
export interface StreamState {
  runId: string | null;
  finished: boolean;
  lastEventId: number;
}

/** How a run ended, as its `run.finished` event says. */
export type RunOutcome = RunEventData<"run.finished">;

/**
 * An entry the DO writes itself, never pushed (the push route's union, shared with the host, has
 * no such type, so a push carrying one is refused whole): the workflow's latest run became blocked
 * on a signal or human input (`waiting: true`), or went on (`false`), as waiting.ts finds it, written
 * with the history that flipped it. Only the log view shows it (the Workflow Runs API's stream);
 * the history view, D1 and the traces never read it.
 */
export interface RunWaitingEvent {
  sourceKey: string;
  type: "run.waiting";
  at: string;
  data: { runId: string; waiting: boolean };
}

/** What the log holds: the pushed events (the shared union) and the DO's own. */
export type LogEvent = RunEvent | RunWaitingEvent;
export type LogEventType = LogEvent["type"];
export type LogEventData<T extends LogEventType> = Extract<LogEvent, { type: T }>["data"];

/** A log entry as the `log` view sends it; `seq` orders the whole log and is its event id. */
export type LogEntry = {
  [T in LogEventType]: { seq: number; type: T; at: string; data: LogEventData<T> };
}[LogEventType];

/** The `workflow` summary a history subscriber gets first. */
export interface WorkflowSummary {
  workflowId: string | null;
  runId: string;
  status: RunStatus;
  startTime: string | null;
  closeTime: string | null;
  historyLength: number;
  taskQueue: string;
  /** The run has ended (Output's `closed`). */
  closed: boolean;
}

export type SubscriptionView = "history" | "log";

/** One message from the DO to the Worker holding a subscriber's SSE response. */
export type SubscriberMessage =
  /** history view, first, once per connection when asked for. */
  | { kind: "workflow"; summary: WorkflowSummary }
  /** history view: Temporal history events after the subscriber's last one; `lastEventId` is the cursor. */
  | { kind: "history"; events: SerializedHistoryEvent[]; lastEventId: number }
  /** history view: reasoning text of a step, in log order between history batches. */
  | { kind: "thinking"; seq: number; activityId?: string; stepName?: string; attempt?: number; text: string }
  /** log view: one log entry, as is. */
  | { kind: "entry"; entry: LogEntry }
  /** both views: the run is over and everything was sent; the DO closes with STREAM_DONE_CLOSE_CODE next. */
  /**
   * `resetRunId` (log view only): the run ended because a reset replaced it with that run, so the
   * workflow goes on there (a stream that follows the workflow subscribes to it). `seq` (history
   * view only): the log seq of the run's closing history event, so the `done` frame's id names the
   * run it ends (an unpinned stream resumed from it goes on with the next run: subscriber-admission.ts).
   */
  | { kind: "done"; outcome: RunOutcome; resetRunId?: string; seq?: number };
