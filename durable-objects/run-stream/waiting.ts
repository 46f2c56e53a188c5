/**
 * Waiting detection: is the latest run blocked on a signal or human input? Yes when its history
 * so far ends with a completed workflow task and nothing is in flight: every activity, timer and
 * child workflow it started has ended (in-flight.ts). (A timer is a durable pause, not waiting for someone.)
 * The D1 row's `waiting_since` follows it (only while the row is `running`), and so does the log:
 * a `run.waiting` entry each time it flips (`waitingFlip`), which the Workflow Runs API's stream
 * sends as `workflow-run` `waiting` or `running`.
 */
import { CLOSE_TYPES, type EventLog } from "./event-log.ts";
import { META_KEYS, waitingSourceKeyPrefix } from "./constants.ts";
import type { Meta } from "./meta.ts";
import type { RunWaitingEvent } from "./messages.ts";

const WORKFLOW_TASK_COMPLETED = "EVENT_TYPE_WORKFLOW_TASK_COMPLETED";
/** `META_KEYS.waiting` when another statement may have changed the row's flag: the next check writes it, whichever way. */
const WAITING_UNKNOWN = "?";

type WaitingLog = Pick<EventLog, "lastHistoryType" | "finished" | "inFlight">;

/** Whether `runId` is blocked on a signal or human input, from the log's derived state (no read of its history). */
export function isWaiting(log: WaitingLog, runId: string): boolean {
  // Runs for every history batch: each check is a look at the log's derived state, not a read.
  if (log.lastHistoryType(runId) !== WORKFLOW_TASK_COMPLETED || log.finished(runId)) return false;
  return log.inFlight(runId) === 0;
}

/**
 * The `run.waiting` entry to append when the latest run's waiting is not what its last one said
 * (a run that has none is said not to wait), else null. Called right after each append, with no
 * await in between, so the entry follows the history that flipped it in the log: every
 * subscriber gets it in order, and a resume from any seq gets the same frames. A finished run
 * gets none, nor one whose history has closed (its outcome may come a moment later): its end says
 * what became of it, and a `running` just before or after it would say something else.
 */
export function waitingFlip(
  log: WaitingLog & Pick<EventLog, "latestRunId" | "loggedWaiting" | "historyCount">,
  at: string,
): RunWaitingEvent | null {
  const runId = log.latestRunId();
  if (!runId || log.finished(runId) || CLOSE_TYPES.has(log.lastHistoryType(runId) ?? "")) return null;
  const waiting = isWaiting(log, runId);
  if (log.loggedWaiting(runId) === waiting) return null;
  return {
    sourceKey: `${waitingSourceKeyPrefix(runId)}${log.historyCount(runId)}`,
    type: "run.waiting",
    at,
    data: { runId, waiting },
  };
}

export class WaitingDetector {
  constructor(
    private readonly log: EventLog,
    private readonly meta: Meta,
  ) {}

  isWaiting(runId: string): boolean {
    return isWaiting(this.log, runId);
  }

  /**
   * The D1 statement that brings `waiting_since` in line, or null when it already is. Call
   * `committed(change)` once the statement is in D1.
   */
  change(db: D1Database, workflowId: string, now: string): { statement: D1PreparedStatement; waiting: boolean } | null {
    const runId = this.log.latestRunId();
    if (!runId) return null;
    const waiting = this.isWaiting(runId);
    const known = this.meta.get(META_KEYS.waiting);
    if (known !== WAITING_UNKNOWN && (known === "1") === waiting) return null;
    const statement = waiting
      ? db
          .prepare(
            "UPDATE runs SET waiting_since = ?, updated_at = ? WHERE temporal_workflow_id = ? AND status = 'running' AND waiting_since IS NULL",
          )
          .bind(now, now, workflowId)
      : db
          .prepare("UPDATE runs SET waiting_since = NULL, updated_at = ? WHERE temporal_workflow_id = ? AND waiting_since IS NOT NULL")
          .bind(now, workflowId);
    return { statement, waiting };
  }

  committed(waiting: boolean): void {
    this.meta.set(META_KEYS.waiting, waiting ? "1" : "0");
  }

  /**
   * A statement that sets the row's `waiting_since` itself goes to D1 (a reset's `run.started`
   * opens the row again, not waiting): what was committed no longer says what the row holds, so
   * the next check writes the flag whichever way it finds the run, or the reset's run, waiting as
   * the run it replaced was, would never be shown waiting.
   */
  forget(): void {
    this.meta.set(META_KEYS.waiting, WAITING_UNKNOWN);
  }
}
