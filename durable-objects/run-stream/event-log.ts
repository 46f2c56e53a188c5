/**
 * The run's event log in the DO's SQLite: append with duplicate drop (by source key), and the
 * reads every other part needs. Events are validated before they reach the log (the push route
 * parses them with the shared zod union), so a row's data is typed by its `type`.
 */
import type { RunEvent, RunEventData, RunEventType } from "../../src/shared/run-event-schema.ts";
import { CLOSE_EVENT_TYPES, type SerializedHistoryEvent } from "../../src/shared/history-events.ts";
import { PROJECTED_TYPES, PROJECTION_STATE } from "./constants.ts";
import type { LogEntry, RunOutcome } from "./messages.ts";

const CLOSE_EVENT_TYPES_SQL = CLOSE_EVENT_TYPES.map((t) => `'${t}'`).join(", ");

interface LogRowSql extends Record<string, SqlStorageValue> {
  seq: number;
  source_key: string;
  type: string;
  at: string;
  run_id: string | null;
  history_event_id: number | null;
  history_type: string | null;
  data: string;
  projected: number;
}

/** One stored event: its place in the log and the event itself. */
export type LogRow = {
  [T in RunEventType]: {
    seq: number;
    sourceKey: string;
    type: T;
    at: string;
    runId: string | null;
    historyEventId: number | null;
    data: RunEventData<T>;
    projected: number;
  };
}[RunEventType];

export type LogRowOf<T extends RunEventType> = Extract<LogRow, { type: T }>;

const COLUMNS = "seq, source_key, type, at, run_id, history_event_id, history_type, data, projected";

function toRow(r: LogRowSql): LogRow {
  // The one place stored JSON becomes typed: it was parsed with the run-event schema on the way in.
  return {
    seq: r.seq,
    sourceKey: r.source_key,
    type: r.type as RunEventType,
    at: r.at,
    runId: r.run_id,
    historyEventId: r.history_event_id,
    data: JSON.parse(r.data),
    projected: r.projected,
  } as LogRow;
}

export function toEntry(row: LogRow): LogEntry {
  return { seq: row.seq, type: row.type, at: row.at, data: row.data } as LogEntry;
}

export class EventLog {
  constructor(private readonly sql: SqlStorage) {}

  private rows(query: string, ...bindings: SqlStorageValue[]): LogRow[] {
    return this.sql
      .exec<LogRowSql>(query, ...bindings)
      .toArray()
      .map(toRow);
  }

  /** Appends the events whose source key is new, in order; returns the rows added. */
  append(events: readonly RunEvent[]): LogRow[] {
    const fresh: LogRow[] = [];
    for (const event of events) {
      const history = event.type === "history" ? event.data.event : null;
      const historyEventId = history ? Number(history.eventId) : null;
      const row = this.sql
        .exec<LogRowSql>(
          `INSERT OR IGNORE INTO events (source_key, type, at, run_id, history_event_id, history_type, data, projected)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING ${COLUMNS}`,
          event.sourceKey,
          event.type,
          event.at,
          event.data.runId,
          historyEventId !== null && Number.isFinite(historyEventId) ? historyEventId : null,
          history?.eventType ?? null,
          JSON.stringify(event.data),
          PROJECTED_TYPES.has(event.type) ? PROJECTION_STATE.pending : PROJECTION_STATE.done,
        )
        .toArray()[0];
      if (row) fresh.push(toRow(row));
    }
    return fresh;
  }

  after(seq: number): LogRow[] {
    return this.rows(`SELECT ${COLUMNS} FROM events WHERE seq > ? ORDER BY seq`, seq);
  }

  ofRunAfter(runId: string, seq: number): LogRow[] {
    return this.rows(`SELECT ${COLUMNS} FROM events WHERE run_id = ? AND seq > ? ORDER BY seq`, runId, seq);
  }

  attributes(runId?: string): LogRowOf<"attribute">[] {
    return (
      runId === undefined
        ? this.rows(`SELECT ${COLUMNS} FROM events WHERE type = 'attribute' ORDER BY seq`)
        : this.rows(`SELECT ${COLUMNS} FROM events WHERE type = 'attribute' AND run_id = ? ORDER BY seq`, runId)
    ) as LogRowOf<"attribute">[];
  }

  /** Rows not yet (fully) in D1, in log order. */
  unprojected(): LogRow[] {
    return this.rows(`SELECT ${COLUMNS} FROM events WHERE projected <> ${PROJECTION_STATE.done} ORDER BY seq`);
  }

  hasUnprojected(): boolean {
    return this.sql.exec(`SELECT 1 FROM events WHERE projected <> ${PROJECTION_STATE.done} LIMIT 1`).toArray().length > 0;
  }

  markProjected(seqs: readonly number[], state: number = PROJECTION_STATE.done): void {
    for (const seq of seqs) this.sql.exec("UPDATE events SET projected = ? WHERE seq = ?", state, seq);
  }

  /** The workflow's current run: the newest run seen, or the one a continue-as-new points to. */
  latestRunId(): string | null {
    const newest = this.rows(`SELECT ${COLUMNS} FROM events WHERE run_id IS NOT NULL ORDER BY seq DESC LIMIT 1`)[0];
    if (!newest) return null;
    return newest.type === "run.finished" && newest.data.newRunId ? newest.data.newRunId : newest.runId;
  }

  /** Whether any event of `runId` is in the log (an unknown run id is a 404 for readers). */
  knowsRun(runId: string): boolean {
    return this.sql.exec("SELECT 1 FROM events WHERE run_id = ? LIMIT 1", runId).toArray().length > 0;
  }

  /** Whether a Temporal reset replaced `runId` with a newer run (its `run.started` names it). */
  wasReset(runId: string): boolean {
    return (
      this.sql
        .exec("SELECT 1 FROM events WHERE type = 'run.started' AND json_extract(data, '$.resetFromRunId') = ? LIMIT 1", runId)
        .toArray().length > 0
    );
  }

  finishedRunIds(): string[] {
    return this.sql
      .exec<{ run_id: string }>("SELECT run_id FROM events WHERE type = 'run.finished'")
      .toArray()
      .map((r) => r.run_id);
  }

  finished(runId: string): RunOutcome | null {
    const row = this.rows(`SELECT ${COLUMNS} FROM events WHERE type = 'run.finished' AND run_id = ? LIMIT 1`, runId)[0] as
      | LogRowOf<"run.finished">
      | undefined;
    return row ? row.data : null;
  }

  /**
   * A run's stream is complete when both its outcome and its closing history event are in the
   * log. The edge may learn the outcome (from a result call) before the relay delivers the last
   * history events; `done` waits for them so a stream never ends short.
   */
  isComplete(runId: string): boolean {
    if (!this.finished(runId)) return false;
    return (
      this.sql
        .exec(`SELECT 1 FROM events WHERE run_id = ? AND type = 'history' AND history_type IN (${CLOSE_EVENT_TYPES_SQL}) LIMIT 1`, runId)
        .toArray().length > 0
    );
  }

  lastHistoryEventId(runId: string): number {
    return (
      this.sql
        .exec<{ last: number | null }>("SELECT MAX(history_event_id) AS last FROM events WHERE run_id = ? AND type = 'history'", runId)
        .toArray()[0]?.last ?? 0
    );
  }

  historyCount(runId: string): number {
    return this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM events WHERE run_id = ? AND type = 'history'", runId).toArray()[0]!.n;
  }

  historyEvent(runId: string, eventId: number): SerializedHistoryEvent | null {
    const row = this.rows(
      `SELECT ${COLUMNS} FROM events WHERE run_id = ? AND type = 'history' AND history_event_id = ?`,
      runId,
      eventId,
    )[0] as LogRowOf<"history"> | undefined;
    return row?.data.event ?? null;
  }

  /** History rows of a run after a Temporal event id, in event order (at most `limit`). */
  historyAfter(runId: string, afterEventId: number, limit = -1): LogRowOf<"history">[] {
    return this.rows(
      `SELECT ${COLUMNS} FROM events WHERE run_id = ? AND type = 'history' AND history_event_id > ? ORDER BY history_event_id LIMIT ?`,
      runId,
      afterEventId,
      limit,
    ) as LogRowOf<"history">[];
  }

  /** The log seq of a run's history event (0 if not in the log). */
  seqOfHistoryEvent(runId: string, eventId: number): number {
    return (
      this.sql
        .exec<{ seq: number }>("SELECT seq FROM events WHERE run_id = ? AND type = 'history' AND history_event_id = ?", runId, eventId)
        .toArray()[0]?.seq ?? 0
    );
  }

  /** What a history subscriber resuming after `afterEventId` is owed: later history, and thinking text logged after that event. */
  streamBacklog(runId: string, afterEventId: number, afterThinkingSeq?: number): LogRow[] {
    // Thinking text after the last thinking entry the client saw, else after its last history event.
    const afterSeq = afterThinkingSeq ?? (afterEventId > 0 ? this.seqOfHistoryEvent(runId, afterEventId) : 0);
    return this.rows(
      `SELECT ${COLUMNS} FROM events WHERE run_id = ?
         AND ((type = 'history' AND history_event_id > ?) OR (type = 'thinking' AND seq > ?))
       ORDER BY seq`,
      runId,
      afterEventId,
      afterSeq,
    );
  }

  /** The Temporal event types of a run's history, newest first (waiting detection). */
  lastHistoryType(runId: string): string | null {
    return (
      this.sql
        .exec<{ t: string | null }>(
          "SELECT history_type AS t FROM events WHERE run_id = ? AND type = 'history' ORDER BY history_event_id DESC LIMIT 1",
          runId,
        )
        .toArray()[0]?.t ?? null
    );
  }

  /** Sum over a run's history of +1 for each type in `opens`, -1 for each in `closes`. */
  openCount(runId: string, opens: readonly string[], closes: readonly string[]): number {
    const list = (types: readonly string[]) => types.map((t) => `'${t}'`).join(", ");
    return (
      this.sql
        .exec<{ open: number | null }>(
          `SELECT SUM(CASE WHEN history_type IN (${list(opens)}) THEN 1 WHEN history_type IN (${list(closes)}) THEN -1 ELSE 0 END) AS open
           FROM events WHERE run_id = ? AND type = 'history'`,
          runId,
        )
        .toArray()[0]?.open ?? 0
    );
  }
}
