/**
 * LogReader: the log as the Worker's routes read it, through the DO's RPC methods: the stream
 * state a stream route decides 404/204 by, pages of a run's history (`GET /workflow/:id/history`),
 * the workflow summary a history stream sends first, the attributes a result carries, the raw
 * log (tests), and the R2 key of a finished run's trace (trace-reader.ts).
 *
 * Nothing here writes the log. Only `traceFor` may write: a complete run's trace goes to R2 when
 * it is first asked for, should the alarm not have written it yet (traces.ts).
 */
import type { Attribute } from "../../src/shared/aggregations.ts";
import { toOutputEvent } from "../../src/shared/output-history.ts";
import { HISTORY_PAGE_MAX_CHARS, META_KEYS } from "./constants.ts";
import type { EventLog } from "./event-log.ts";
import type { LogEvent, StreamState, WorkflowSummary } from "./messages.ts";
import type { Meta } from "./meta.ts";
import type { TraceWriter } from "./traces.ts";

/** What a history page may wait for in the DO before it answers (each ms; absent or 0: not at all). */
export interface HistoryPageWaits {
  /** The run's outcome is known and its last events are still on their way: a page with its end. */
  catchUpMs?: number;
  /** A first page (after event 0) of a run the log knows, with no event yet: the host relays the first within moments. */
  firstEventsMs?: number;
  /** A long-poll: nothing after the cursor yet, and the run's history not complete. */
  longPollMs?: number;
}

export interface LogReaderDeps {
  log: Pick<
    EventLog,
    | "after"
    | "usageAttributes"
    | "finished"
    | "historyRowsAfter"
    | "historyCount"
    | "historyEvent"
    | "isComplete"
    | "knowsRun"
    | "lastHistoryEventId"
    | "latestRunId"
  >;
  /** The workflow id this DO serves (`META_KEYS.workflowId`), once a start, push or subscription named it. */
  meta: Pick<Meta, "get">;
  traces: Pick<TraceWriter, "keyFor">;
}

export class LogReader {
  constructor(private readonly deps: LogReaderDeps) {}

  /** The attributes recorded by the steps that a run's usage counts (EventLog.usageAttributes), in order. */
  attributes(runId: string | null): Attribute[] {
    return this.deps.log.usageAttributes(runId).map((r) => r.data.attribute);
  }

  /** The log in order, the DO's own entries (`run.waiting`) included (for tests and for readers that want raw events). */
  events(afterSeq: number): Array<LogEvent & { seq: number }> {
    return this.deps.log
      .after(afterSeq)
      .map((r) => ({ seq: r.seq, sourceKey: r.sourceKey, type: r.type, at: r.at, data: r.data }) as LogEvent & { seq: number });
  }

  /** Stream state of `runId`, or of the latest run when none is given. */
  streamState(runId?: string): StreamState {
    const { log } = this.deps;
    const id = runId ?? log.latestRunId();
    if (!id) return { runId: null, finished: false, lastEventId: 0 };
    return { runId: id, finished: log.isComplete(id), lastEventId: log.lastHistoryEventId(id) };
  }

  /**
   * A page of a run's history, as streams send it: events after `afterEventId`, at most `limit`,
   * and at most HISTORY_PAGE_MAX_CHARS of JSON (but always one event, if there is one). `full`
   * says the page stopped at either limit, so more may follow. `nextAfterEventId` is null on the
   * last page of a finished run.
   */
  historyPage(runId: string | undefined, afterEventId: number, limit: number, includePayloads: boolean) {
    const { log } = this.deps;
    const id = runId ?? log.latestRunId();
    if (!id)
      return {
        runId: null,
        events: [],
        full: false,
        nextAfterEventId: null,
        complete: false,
        ending: false,
        lastEventId: afterEventId,
        known: false,
        workflow: null,
      };
    const events: ReturnType<typeof toOutputEvent>[] = [];
    let last = afterEventId;
    let chars = 0;
    let full = false;
    for (const row of log.historyRowsAfter(id, afterEventId, limit)) {
      const event = toOutputEvent(row.data.event, includePayloads);
      chars += JSON.stringify(event).length;
      if (events.length > 0 && chars > HISTORY_PAGE_MAX_CHARS) {
        full = true;
        break;
      }
      events.push(event);
      last = row.historyEventId!;
    }
    if (events.length === limit) full = true;
    const complete = log.isComplete(id);
    const more = full || !complete;
    const known = log.knowsRun(id);
    return {
      runId: id,
      events,
      full,
      nextAfterEventId: more ? last : null,
      complete,
      /** The run's outcome is known and its last history events are still on their way (see `workflowSummary`). */
      ending: log.finished(id) !== null && !complete,
      lastEventId: last,
      known,
      workflow: known ? this.workflowSummary(id) : null,
    };
  }

  /**
   * The trace of `runId` (or the latest run): its R2 key once the run is finished and its history
   * complete, written now if it was not yet; null while the run is still going.
   */
  async traceFor(runId?: string): Promise<{ runId: string; key: string } | null> {
    const id = runId ?? this.deps.log.latestRunId();
    const workflowId = this.deps.meta.get(META_KEYS.workflowId);
    if (!id || !workflowId) return null;
    const key = await this.deps.traces.keyFor(workflowId, id);
    return key ? { runId: id, key } : null;
  }

  /**
   * The `workflow` summary of `runId` (a history stream's first message, a history page's
   * `workflow`). It says what the events beside it say, as Temporal's describe does: closed only
   * once the history holds its closing event. The outcome alone can come first (a status or
   * result read learns it from the host, tens of milliseconds before the relay brings the last
   * events), and a client that read "completed" next to a history without its end would show the
   * run over with its last step still running.
   */
  workflowSummary(runId: string): WorkflowSummary {
    const { log, meta } = this.deps;
    const started = log.historyEvent(runId, 1);
    const finished = log.isComplete(runId) ? log.finished(runId) : null;
    const lastEventId = log.lastHistoryEventId(runId);
    const closeTime = finished && lastEventId ? (log.historyEvent(runId, lastEventId)?.eventTime ?? null) : null;
    return {
      workflowId: meta.get(META_KEYS.workflowId),
      runId,
      status: finished?.status ?? "running",
      startTime: started?.eventTime ?? null,
      closeTime,
      historyLength: log.historyCount(runId),
      // Output's describe always names one; before the first history event arrives we cannot.
      taskQueue: (started?.attributes.taskQueue as { name?: string } | undefined)?.name ?? "",
      closed: finished !== null,
    };
  }
}
