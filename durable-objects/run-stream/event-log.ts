/**
 * The run's event log in the DO's SQLite: append with duplicate drop (by source key), and the
 * reads every other part needs. Events are validated before they reach the log (the push route
 * parses them with the shared zod union), so a row's data is typed by its `type`.
 */
import type { RunEventData } from "../../src/shared/run-event-schema.ts";
import { CLOSE_EVENT_TYPES, type SerializedHistoryEvent } from "../../src/shared/history-events.ts";
import { OUTCOMES_KEPT, PROJECTED_TYPES, PROJECTION_STATE, UNPROJECTED_KEPT_MAX_CHARS, waitingSourceKeyPrefix } from "./constants.ts";
import { DATA_IN_PARTS, piecesOf } from "./event-parts.ts";
import { utf8Length } from "../../src/shared/text-limits.ts";
import { setBounded } from "../../src/shared/bounded-map.ts";
import { IN_FLIGHT_DELTA_SQL, inFlightDelta } from "./in-flight.ts";
import type { LogEntry, LogEvent, LogEventData, LogEventType, RunOutcome } from "./messages.ts";

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
  /** How many pieces of `event_parts` hold the entry's JSON (event-parts.ts); 0: `data` holds it. */
  parts: number;
}

/** One stored event: its place in the log and the event itself. */
export type LogRow = {
  [T in LogEventType]: {
    seq: number;
    sourceKey: string;
    type: T;
    at: string;
    runId: string | null;
    historyEventId: number | null;
    data: LogEventData<T>;
    projected: number;
  };
}[LogEventType];

export type LogRowOf<T extends LogEventType> = Extract<LogRow, { type: T }>;

/** A row D1 does not have yet, without its data: what the checks and the projection's cut need of it. */
export interface UnprojectedRow {
  seq: number;
  type: LogEventType;
  runId: string | null;
  projected: number;
  /** Characters of its stored JSON: what keeping it whole costs, and what it weighs in a batch. */
  chars: number;
}

const COLUMNS = "seq, source_key, type, at, run_id, history_event_id, history_type, data, projected, parts";

/** A row as read, with the size of its stored JSON in UTF-8 (about what it becomes on the wire). */
export interface SizedLogRow {
  row: LogRow;
  bytes: number;
}

/** A row's stored JSON, put back together when it was stored in pieces (event-parts.ts). */
function storedJson(r: LogRowSql, sql: SqlStorage): string {
  return r.parts > 0
    ? sql
        .exec<{ text: string }>("SELECT text FROM event_parts WHERE seq = ? ORDER BY part", r.seq)
        .toArray()
        .map((p) => p.text)
        .join("")
    : r.data;
}

function toRow(r: LogRowSql, sql: SqlStorage): LogRow {
  return parseRow(r, storedJson(r, sql));
}

/** toRow, sized: only the backlog's reads, which cut it in parts, pay for the count. */
function toSizedRow(r: LogRowSql, sql: SqlStorage): SizedLogRow {
  const json = storedJson(r, sql);
  return { row: parseRow(r, json), bytes: utf8Length(json) };
}

function parseRow(r: LogRowSql, json: string): LogRow {
  // The one place stored JSON becomes typed: it was parsed with the run-event schema on the way in.
  return {
    seq: r.seq,
    sourceKey: r.source_key,
    type: r.type as LogEventType,
    at: r.at,
    runId: r.run_id,
    historyEventId: r.history_event_id,
    data: JSON.parse(json),
    projected: r.projected,
  } as LogRow;
}

/** The run a row makes the latest (a continue-as-new's outcome points to the new run). */
function latestOf(row: LogRow): Derived["latest"] {
  return {
    runId: row.runId!,
    newRunId: row.type === "run.finished" && row.data.newRunId ? row.data.newRunId : null,
  };
}

export function toEntry(row: LogRow): LogEntry {
  return { seq: row.seq, type: row.type, at: row.at, data: row.data } as LogEntry;
}

/** Per run: what its history rows add up to (kept in memory, updated on append). */
interface HistoryStats {
  /** Highest Temporal event id logged, and that event's type. */
  lastEventId: number;
  lastType: string | null;
  count: number;
  /** A closing history event is in the log. */
  closed: boolean;
  /** Activities, timers and child workflows started and not ended (in-flight.ts). */
  inFlight: number;
}

/** Rows marked per UPDATE (bound parameters per statement stay well under SQLite's limit). */
const MARK_CHUNK = 50;

/** The runs a reset's `run.started` replaced: the one it started from, and the current run it took over from if another. */
function replacedBy(data: RunEventData<"run.started">): string[] {
  return [data.resetFromRunId, data.replacedRunId].filter((id): id is string => !!id);
}

/** The history event types that close a run (its last event). */
export const CLOSE_TYPES: ReadonlySet<string> = new Set(CLOSE_EVENT_TYPES);

/**
 * The log's derived state, which every change to the log and every alarm consults: the latest
 * run, the runs' links (which run follows which), each run's history totals, and which rows D1
 * does not have yet. Read from SQLite once per wake (nothing to read for a new DO; a run's history
 * totals when first asked for) and kept in line by `append` and `markProjected`, the log's only
 * writers, instead of a query per check. Runs' outcomes are not in it: `EventLog.outcomes`.
 */
interface Derived {
  latest: { runId: string; newRunId: string | null } | null;
  /**
   * Per run, its history totals, read when first asked for (null: read, and it has none): a
   * workflow that continued as new thousands of times would otherwise add up every run's history
   * on every wake, where a wake needs one or two runs'.
   */
  history: Map<string, HistoryStats | null>;
  /** Every row not yet fully in D1, by seq (its `projected` kept current), without its data. */
  unprojected: Map<number, UnprojectedRow>;
  /** Runs a Temporal reset replaced (named by a later `run.started`: the run it started from, and the current run it took over from). */
  resetRuns: Set<string>;
  /** Per run, what its last `run.waiting` entry says (false: none), read when first asked for (waiting.ts). */
  waitingLogged: Map<string, boolean>;
  /** What `lineage` walks back, each the first such row in the log: a reset's run → the run it was started from. */
  resetFrom: Map<string, string>;
  /** …and a continue-as-new's next run → the run that handed over to it (any `run.finished` naming it, not only a run's first). */
  continuedFrom: Map<string, string>;
}

/** A fresh log's derived state. */
function emptyDerived(): Derived {
  return {
    latest: null,
    history: new Map(),
    unprojected: new Map(),
    resetRuns: new Set(),
    waitingLogged: new Map(),
    resetFrom: new Map(),
    continuedFrom: new Map(),
  };
}

/** Brings the predecessors `lineage` walks in line with a reset's `run.started` (hydrate, noteAppended). */
function noteResetStart(d: Derived, runId: string | null, data: RunEventData<"run.started">): void {
  for (const id of replacedBy(data)) d.resetRuns.add(id);
  if (runId !== null && data.resetFromRunId && !d.resetFrom.has(runId)) d.resetFrom.set(runId, data.resetFromRunId);
}

/** …and with a `run.finished` of `runId` that names `next` as the run it continued as new into (any of its ends, not only its first). */
function noteHandOver(d: Derived, runId: string, next: unknown): void {
  if (typeof next === "string" && !d.continuedFrom.has(next)) d.continuedFrom.set(next, runId);
}

/** A run's outcome as the log keeps it: its first `run.finished` (a later one changes nothing), and when it was. */
interface LoggedOutcome {
  outcome: RunOutcome;
  at: string;
}

/** A run boundary's link, as the wake reads it: a reset's start whole, of an end only the run it names next. */
interface BoundarySql extends Record<string, SqlStorageValue> {
  seq: number;
  run_id: string | null;
  /** A reset's `run.started`: its JSON (null for an end). */
  started: string | null;
  /** An end's `newRunId`. */
  next: SqlStorageValue;
}

export class EventLog {
  private readonly derived: Derived;
  /**
   * Some rows of `derived.unprojected` whole, so that a push's rows are projected without a read
   * back: the oldest that fit UNPROJECTED_KEPT_MAX_CHARS (a backlog's rest is read in its batch).
   * Empty after a wake.
   */
  private readonly kept = new Map<number, LogRow>();
  private keptChars = 0;
  /** The outcomes read or appended last (OUTCOMES_KEPT), by run; null: the run has none (yet). Empty after a wake. */
  private readonly outcomes = new Map<string, LoggedOutcome | null>();
  /** The seq of the newest `run.finished` appended this wake (0: none): `finishedRunIdsAfter` needs no statement when nothing ended since. */
  private newestEndSeq = 0;
  /** The DO was new this wake: every row of the log was appended by this instance (no history to read back). */
  private readonly beganEmpty: boolean;

  /**
   * `fresh`: the DO was just created, so its log is empty (nothing to read). `transaction` runs
   * writes that must land together or not at all (the DO's `storage.transactionSync`).
   * `historyNeverCloses`: whether the watchdog found that Temporal no longer has the run, so its
   * closing history event will never come (META_KEYS.historyNeverCloses, run-lifecycle.ts).
   */
  constructor(
    private readonly sql: SqlStorage,
    fresh = false,
    private readonly transaction: <T>(writes: () => T) => T = (writes) => writes(),
    private readonly historyNeverCloses: (runId: string) => boolean = () => false,
  ) {
    this.beganEmpty = fresh;
    this.derived = fresh ? emptyDerived() : this.hydrate();
  }

  private hydrate(): Derived {
    const derived = emptyDerived();
    const { resetRuns } = derived;
    /** The newest end of a run that continued as new: it points at the next run (noteAppended). */
    let newestHandOver: { seq: number; runId: string; newRunId: string } | undefined;
    /** Runs whose outcome (their first end) continued as new: superseded, as a reset's runs are. */
    const continued: string[] = [];
    /** Runs whose end was read already (this wake's reading only): a run's first end is its outcome. */
    const ended = new Set<string>();
    // The runs' links, in log order: a reset's start whole (it is small), and of each end only the
    // run it names next, not its outcome (a run's output or error, up to megabytes, is read when
    // asked for). `type IN (…)` as events_run_boundaries has it: the runs' starts and ends, not the whole log.
    for (const r of this.sql.exec<BoundarySql>(
      `SELECT seq, run_id,
         CASE WHEN type = 'run.started' THEN data END AS started,
         CASE WHEN type = 'run.finished' THEN json_extract(data, '$.newRunId') END AS next
       FROM events
       WHERE type IN ('run.started', 'run.finished')
         AND (type = 'run.finished' OR json_extract(data, '$.resetFromRunId') IS NOT NULL) ORDER BY seq`,
    )) {
      if (r.started !== null) {
        noteResetStart(derived, r.run_id, JSON.parse(r.started) as RunEventData<"run.started">);
        continue;
      }
      if (r.run_id === null) continue;
      const first = !ended.has(r.run_id);
      ended.add(r.run_id);
      // An end kept in pieces (an output past 1 MiB) reads NULL here: a continue-as-new's end, which
      // has no output, never is one (event-parts.ts); the outcome itself is read when asked for.
      const next = r.next;
      noteHandOver(derived, r.run_id, next);
      if (!next) continue;
      newestHandOver = { seq: r.seq, runId: r.run_id, newRunId: String(next) };
      if (first) continued.push(r.run_id);
    }
    // The latest run as noteAppended keeps it: the newest row of a run nothing replaced, or the
    // newest hand-over of a continue-as-new, whichever came last.
    const superseded = [...resetRuns, ...continued];
    const newestFree = this.rows(
      `SELECT ${COLUMNS} FROM events WHERE run_id IS NOT NULL AND run_id NOT IN (SELECT value FROM json_each(?)) ORDER BY seq DESC LIMIT 1`,
      JSON.stringify(superseded),
    )[0];
    derived.latest =
      !newestHandOver || (newestFree && newestFree.seq > newestHandOver.seq)
        ? newestFree
          ? latestOf(newestFree)
          : null
        : { runId: newestHandOver.runId, newRunId: newestHandOver.newRunId };
    const { unprojected } = derived;
    // Which rows D1 lacks, not their data: a backlog of a long D1 outage may be more than the DO holds.
    // Through events_pending by name: without statistics SQLite would rather scan the whole log in
    // seq order than sort the few rows pending.
    for (const r of this.sql.exec<{ seq: number; type: string; run_id: string | null; projected: number; chars: number | null }>(
      `SELECT seq, type, run_id, projected,
         CASE WHEN parts > 0 THEN (SELECT SUM(length(p.text)) FROM event_parts p WHERE p.seq = events.seq) ELSE length(data) END AS chars
       FROM events INDEXED BY events_pending WHERE projected <> ${PROJECTION_STATE.done} ORDER BY seq`,
    )) {
      unprojected.set(r.seq, { seq: r.seq, type: r.type as LogEventType, runId: r.run_id, projected: r.projected, chars: r.chars ?? 0 });
    }
    return derived;
  }

  /** Brings the derived state in line with a row just added (`chars`: its JSON's length). */
  private noteAppended(row: LogRow, chars: number): void {
    const d = this.derived;
    if (row.projected !== PROJECTION_STATE.done) {
      d.unprojected.set(row.seq, { seq: row.seq, type: row.type, runId: row.runId, projected: row.projected, chars });
      this.keep(row, chars);
    }
    if (row.type === "run.started") noteResetStart(d, row.runId, row.data);
    if (row.type === "run.waiting") d.waitingLogged.set(row.data.runId, row.data.waiting);
    if (row.runId === null) return;
    // A run a reset replaced, or one that continued as new, never becomes the latest again: its
    // late rows (the relay's history up to its close, an activity's last events) trail the run
    // that replaced it. Only its hand-over itself (a run.finished naming the next run) moves on.
    if (!this.superseded(row.runId) || (row.type === "run.finished" && row.data.newRunId)) d.latest = latestOf(row);
    if (row.type === "run.finished") {
      this.newestEndSeq = row.seq;
      noteHandOver(d, row.runId, row.data.newRunId);
      this.noteOutcome(row);
    }
    if (row.type === "history") {
      const known = d.history.get(row.runId);
      // Not read yet: the read (the row is in already) counts it. A log that began empty this wake
      // has seen every row it holds, so there is nothing to read.
      if (known === undefined && !this.beganEmpty) {
        this.historyStats(row.runId);
        return;
      }
      const stats = known ?? { lastEventId: 0, lastType: null, count: 0, closed: false, inFlight: 0 };
      stats.count++;
      const type = row.data.event.eventType;
      stats.inFlight += inFlightDelta(type);
      if (row.historyEventId !== null && row.historyEventId > stats.lastEventId) {
        stats.lastEventId = row.historyEventId;
        stats.lastType = type ?? null;
      }
      if (type && CLOSE_TYPES.has(type)) stats.closed = true;
      d.history.set(row.runId, stats);
    }
  }

  /**
   * A run's history totals: kept from the first read of this wake on (appends keep them current).
   * One run's rows, through `events_run_history`.
   */
  private historyStats(runId: string): HistoryStats | null {
    const known = this.derived.history.get(runId);
    if (known !== undefined) return known;
    if (this.beganEmpty) return null;
    // The last event's type is read by its own lookup: a bare column next to more than one MAX()
    // comes from whichever row SQLite likes, which is not the last event's.
    const r = this.sql
      .exec<{ last: number | null; t: string | null; n: number; closed: number | null; inFlight: number | null }>(
        `SELECT MAX(history_event_id) AS last, COUNT(*) AS n,
           MAX(history_type IN (${CLOSE_EVENT_TYPES_SQL})) AS closed, SUM(${IN_FLIGHT_DELTA_SQL}) AS inFlight,
           (SELECT h.history_type FROM events h WHERE h.run_id = ?1 AND h.type = 'history'
              ORDER BY h.history_event_id DESC LIMIT 1) AS t
         FROM events WHERE type = 'history' AND run_id = ?1`,
        runId,
      )
      .one();
    const stats =
      r.n === 0
        ? null
        : {
            lastEventId: r.last ?? 0,
            lastType: r.last === null ? null : r.t,
            count: r.n,
            closed: r.closed === 1,
            inFlight: r.inFlight ?? 0,
          };
    this.derived.history.set(runId, stats);
    return stats;
  }

  /**
   * A run's outcome (its first `run.finished`), null if it has none: from the few kept (the most
   * recently used, OUTCOMES_KEPT), else read through `events_run_outcomes` and kept. A wake reads
   * none: each may be as large as the run's output, and a workflow id may hold thousands of runs.
   */
  private outcomeOf(runId: string): LoggedOutcome | null {
    let outcome = this.outcomes.get(runId);
    if (outcome === undefined) {
      const row = this.rows(
        `SELECT ${COLUMNS} FROM events INDEXED BY events_run_outcomes WHERE type = 'run.finished' AND run_id = ? ORDER BY seq LIMIT 1`,
        runId,
      )[0];
      outcome = row?.type === "run.finished" ? { outcome: row.data, at: row.at } : null;
    }
    this.keepOutcome(runId, outcome);
    return outcome;
  }

  /** Keeps `runId`'s outcome (or that it has none) as the most recently used, and lets the least recently used go past OUTCOMES_KEPT. */
  private keepOutcome(runId: string, outcome: LoggedOutcome | null): void {
    setBounded(this.outcomes, runId, outcome, OUTCOMES_KEPT);
  }

  /** A `run.finished` just appended: kept as its run's outcome if it is the run's first (a later end changes nothing). */
  private noteOutcome(row: LogRowOf<"run.finished">): void {
    const runId = row.data.runId;
    const kept = this.outcomes.get(runId);
    const first =
      kept === null ||
      (kept === undefined &&
        this.sql
          .exec<{ seq: number | null }>(
            "SELECT MIN(seq) AS seq FROM events INDEXED BY events_run_outcomes WHERE type = 'run.finished' AND run_id = ?",
            runId,
          )
          .one().seq === row.seq);
    if (first) this.keepOutcome(runId, { outcome: row.data, at: row.at });
  }

  /** Keeps an unprojected row whole if UNPROJECTED_KEPT_MAX_CHARS has room for it. */
  private keep(row: LogRow, chars: number): void {
    if (this.kept.has(row.seq) || this.keptChars + chars > UNPROJECTED_KEPT_MAX_CHARS) return;
    this.kept.set(row.seq, row);
    this.keptChars += chars;
  }

  private rows(query: string, ...bindings: SqlStorageValue[]): LogRow[] {
    return this.sql
      .exec<LogRowSql>(query, ...bindings)
      .toArray()
      .map((r) => toRow(r, this.sql));
  }

  /** Appends the events whose source key is new, in order; returns the rows added. */
  append(events: readonly LogEvent[]): LogRow[] {
    const fresh: LogRow[] = [];
    for (const event of events) {
      const history = event.type === "history" ? event.data.event : null;
      const historyEventId = history ? Number(history.eventId) : null;
      const storedEventId = historyEventId !== null && Number.isFinite(historyEventId) ? historyEventId : null;
      const projected = PROJECTED_TYPES.has(event.type) ? PROJECTION_STATE.pending : PROJECTION_STATE.done;
      const json = JSON.stringify(event.data);
      // An entry too large for one row goes in pieces (event-parts.ts).
      const pieces = piecesOf(json);
      const insert = () => {
        const row = this.sql
          .exec<{ seq: number }>(
            `INSERT OR IGNORE INTO events (source_key, type, at, run_id, history_event_id, history_type, data, projected, parts)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq`,
            event.sourceKey,
            event.type,
            event.at,
            event.data.runId,
            storedEventId,
            history?.eventType ?? null,
            pieces ? DATA_IN_PARTS : json,
            projected,
            pieces?.length ?? 0,
          )
          .toArray()[0];
        if (row && pieces) {
          for (const [part, text] of pieces.entries()) {
            this.sql.exec("INSERT INTO event_parts (seq, part, text) VALUES (?, ?, ?)", row.seq, part, text);
          }
        }
        return row;
      };
      // An entry in pieces is its row and its pieces in one transaction: a row without all its pieces could never be read.
      const inserted = pieces ? this.transaction(insert) : insert();
      if (inserted) {
        // The row as stored, built from the (already validated) event instead of read back and parsed.
        const added = {
          seq: inserted.seq,
          sourceKey: event.sourceKey,
          type: event.type,
          at: event.at,
          runId: event.data.runId ?? null,
          historyEventId: storedEventId,
          data: event.data,
          projected,
        } as LogRow;
        this.noteAppended(added, json.length);
        fresh.push(added);
      }
    }
    return fresh;
  }

  after(seq: number): LogRow[] {
    return this.rows(`SELECT ${COLUMNS} FROM events WHERE seq > ? ORDER BY seq`, seq);
  }

  /**
   * Rows read from SQLite one at a time as they are asked for, each with its size: a reader that
   * stops early (a backlog cut by size) never loads the rest, whose entries may each be a megabyte or more.
   */
  private *sizedRows(query: string, ...bindings: SqlStorageValue[]): Generator<SizedLogRow> {
    for (const r of this.sql.exec<LogRowSql>(query, ...bindings)) yield toSizedRow(r, this.sql);
  }

  /** The entries of `runId` after `seq`, but those of `exceptType` (never read, so never parsed or put together); read as asked for. */
  ofRunAfter(runId: string, seq: number, exceptType: string): Generator<SizedLogRow> {
    return this.sizedRows(`SELECT ${COLUMNS} FROM events WHERE run_id = ? AND seq > ? AND type <> ? ORDER BY seq`, runId, seq, exceptType);
  }

  /** Whether the log has an entry of `runId` after `seq` of one of `types` (nothing is read but that). */
  hasEntryAfter(seq: number, runId: string, types: readonly string[]): boolean {
    if (types.length === 0) return false;
    return (
      this.sql
        .exec(
          `SELECT 1 FROM events WHERE seq > ? AND run_id = ? AND type IN (${types.map(() => "?").join(", ")}) LIMIT 1`,
          seq,
          runId,
          ...types,
        )
        .toArray().length > 0
    );
  }

  attributes(runId?: string): LogRowOf<"attribute">[] {
    return (
      runId === undefined
        ? this.rows(`SELECT ${COLUMNS} FROM events WHERE type = 'attribute' ORDER BY seq`)
        : this.rows(`SELECT ${COLUMNS} FROM events WHERE type = 'attribute' AND run_id = ? ORDER BY seq`, runId)
    ) as LogRowOf<"attribute">[];
  }

  /**
   * The outputs of one step attempt of `runId` (the last its `step` events carried), or null: what
   * a step row too small for them points to (`step_runs.outputs_in_log`).
   */
  stepOutputs(runId: string, activityId: string, attempt: number): unknown {
    // Only that attempt's rows are read and parsed (a run's other steps may hold outputs as large):
    // a row in its own column by its JSON, a row kept in pieces by its source key (the host's
    // `step:<runId>:<activityId>:<attempt>:<state>`).
    const prefix = `step:${runId}:${activityId}:${attempt}:`;
    let outputs: unknown = null;
    for (const row of this.rows(
      `SELECT ${COLUMNS} FROM events WHERE type = 'step' AND run_id = ?1 AND (
         (parts = 0 AND json_extract(data, '$.activityId') = ?2 AND COALESCE(json_extract(data, '$.attempt'), 1) = ?3)
         OR (parts > 0 AND substr(source_key, 1, length(?4)) = ?4))
       ORDER BY seq`,
      runId,
      activityId,
      attempt,
      prefix,
    )) {
      if (row.type === "step" && row.data.outputs !== undefined && row.data.outputs !== null) outputs = row.data.outputs;
    }
    return outputs;
  }

  /** Rows not yet (fully) in D1, in log order, without their data (`unprojectedRows` reads it). */
  unprojected(): UnprojectedRow[] {
    // Copies: a caller keeps its snapshot while markProjected moves the rows on. Appended in seq order.
    return [...this.derived.unprojected.values()].map((row) => ({ ...row }));
  }

  /**
   * The rows `seqs` (in log order) whole: those kept from their append as they are, the rest read
   * back in one query, and kept if UNPROJECTED_KEPT_MAX_CHARS has room (a retry reads them no more).
   */
  unprojectedRows(seqs: readonly number[]): LogRow[] {
    const missing = seqs.filter((seq) => !this.kept.has(seq));
    const read = new Map<number, LogRow>();
    if (missing.length > 0) {
      for (const row of this.rows(
        `SELECT ${COLUMNS} FROM events WHERE seq IN (SELECT value FROM json_each(?)) ORDER BY seq`,
        JSON.stringify(missing),
      )) {
        read.set(row.seq, row);
        const pending = this.derived.unprojected.get(row.seq);
        if (pending) this.keep(row, pending.chars);
      }
    }
    // Copies, as `unprojected`'s.
    return seqs.flatMap((seq) => {
      const row = this.kept.get(seq) ?? read.get(seq);
      return row ? [{ ...row }] : [];
    });
  }

  /** Characters of JSON of the unprojected rows kept whole in memory (at most UNPROJECTED_KEPT_MAX_CHARS). */
  keptUnprojectedChars(): number {
    return this.keptChars;
  }

  hasUnprojected(): boolean {
    return this.derived.unprojected.size > 0;
  }

  /** One statement per MARK_CHUNK rows. */
  markProjected(seqs: readonly number[], state: number = PROJECTION_STATE.done): void {
    for (let i = 0; i < seqs.length; i += MARK_CHUNK) {
      const chunk = seqs.slice(i, i + MARK_CHUNK);
      this.sql.exec(`UPDATE events SET projected = ? WHERE seq IN (${chunk.map(() => "?").join(", ")})`, state, ...chunk);
    }
    for (const seq of seqs) {
      const pending = this.derived.unprojected.get(seq);
      if (!pending) continue;
      const row = this.kept.get(seq);
      if (state === PROJECTION_STATE.done) {
        this.derived.unprojected.delete(seq);
        if (row) {
          this.kept.delete(seq);
          this.keptChars -= pending.chars;
        }
      } else {
        pending.projected = state;
        if (row) row.projected = state;
      }
    }
  }

  /** The workflow's current run: the newest run seen, or the one a continue-as-new points to. */
  latestRunId(): string | null {
    const latest = this.derived.latest;
    return latest ? (latest.newRunId ?? latest.runId) : null;
  }

  /** The run the entry `seq` belongs to (null: no such entry, or one of no run). */
  runOfSeq(seq: number): string | null {
    return this.sql.exec<{ run_id: string | null }>("SELECT run_id FROM events WHERE seq = ?", seq).toArray()[0]?.run_id ?? null;
  }

  /**
   * Whether any event of `runId` is in the log, or a continue-as-new named it as the next run (an
   * unknown run id is a 404 for readers). Temporal creates that run with the hand-over, so it
   * exists before the relay brings its first event, and a client following the hand-over (Output's
   * CLI does, at once) must not be told there is no such run.
   */
  knowsRun(runId: string): boolean {
    if (this.sql.exec("SELECT 1 FROM events WHERE run_id = ? LIMIT 1", runId).toArray().length > 0) return true;
    // Named by a run's outcome (its first end): the first end naming it is nearly always that one.
    const from = this.derived.continuedFrom.get(runId);
    if (from === undefined) return false;
    if (this.finished(from)?.newRunId === runId) return true;
    // A later end of `from` named it first; some other run's outcome may name it too (a log that should never be).
    return (
      this.sql
        .exec(
          `SELECT 1 FROM events WHERE type IN ('run.started', 'run.finished') AND type = 'run.finished'
             AND json_extract(data, '$.newRunId') = ?1
             AND seq = (SELECT MIN(o.seq) FROM events o INDEXED BY events_run_outcomes WHERE o.type = 'run.finished' AND o.run_id = events.run_id)
           LIMIT 1`,
          runId,
        )
        .toArray().length > 0
    );
  }

  /** Whether the log has a row of `runId` before the row `seq` (one lookup through `events_run_history`). */
  hadRunBefore(runId: string, seq: number): boolean {
    return this.sql.exec("SELECT 1 FROM events WHERE run_id = ? AND seq < ? LIMIT 1", runId, seq).toArray().length > 0;
  }

  /** Whether a reset replaced `runId`, or it continued as new: a later run took over from it. */
  private superseded(runId: string): boolean {
    return this.derived.resetRuns.has(runId) || Boolean(this.finished(runId)?.newRunId);
  }

  /** Whether a Temporal reset replaced `runId` with a newer run (its `run.started` names it). */
  wasReset(runId: string): boolean {
    return this.derived.resetRuns.has(runId);
  }

  /** The `run.started` of the reset that replaced `runId` (the run it started, and when); null if none did. */
  private replacement(runId: string): { runId: string; at: string } | null {
    if (!this.wasReset(runId)) return null;
    const row = this.sql
      .exec<{ run_id: string; at: string }>(
        `SELECT run_id, at FROM events WHERE type = 'run.started'
           AND (json_extract(data, '$.resetFromRunId') = ?1 OR json_extract(data, '$.replacedRunId') = ?1) ORDER BY seq LIMIT 1`,
        runId,
      )
      .toArray()[0];
    return row ? { runId: row.run_id, at: row.at } : null;
  }

  /** The run a reset started in place of `runId`; null if no reset replaced it. */
  resetSuccessor(runId: string): string | null {
    return this.replacement(runId)?.runId ?? null;
  }

  /** The run that took over from `runId`: the one it continued as new into, or the one a reset started in its place; null if none. */
  successorOf(runId: string): string | null {
    return this.finished(runId)?.newRunId ?? this.resetSuccessor(runId);
  }

  /** When the edge logged `runId`'s `run.started` (its start, or the reset that started it); null if not logged. */
  startedAt(runId: string): string | null {
    return (
      this.sql
        .exec<{ at: string }>("SELECT at FROM events WHERE type = 'run.started' AND run_id = ? ORDER BY seq LIMIT 1", runId)
        .toArray()[0]?.at ?? null
    );
  }

  /** When a reset replaced `runId` (the time of the `run.started` that names it); null if none did. */
  replacedAt(runId: string): string | null {
    return this.replacement(runId)?.at ?? null;
  }

  /**
   * `runId` and the runs it follows from, newest first: the run a reset started it from, or (no
   * reset started it) the run that continued as new into it, and so on back to the workflow's
   * first run. Walked in memory (no statement per step: a chain of continues-as-new may have
   * thousands of runs in one DO).
   */
  lineage(runId: string): string[] {
    const runs = [runId];
    // A log that named a run twice would loop: each run counts once.
    const seen = new Set(runs);
    for (let id = this.predecessor(runId); id !== null && !seen.has(id); id = this.predecessor(id)) {
      runs.push(id);
      seen.add(id);
    }
    return runs;
  }

  /** The run `runId` follows from: the first reset that started it names it, else the first hand-over to it; null if none. */
  private predecessor(runId: string): string | null {
    return this.derived.resetFrom.get(runId) ?? this.derived.continuedFrom.get(runId) ?? null;
  }

  /**
   * The attributes a run's usage counts (its result's aggregations, its webhook), in log order: for
   * the workflow's latest run (or none named), all of the log's, those of runs a reset replaced
   * included (their work was done and paid for), as the run's row answers it; for an earlier run,
   * its own and those of the runs it follows from, not of runs that came after it. One rule, so a
   * run answers the same whether D1 already names it or is a moment behind.
   */
  usageAttributes(runId: string | null): LogRowOf<"attribute">[] {
    return runId === null || runId === this.latestRunId() ? this.attributes() : this.attributesOf(this.lineage(runId));
  }

  /**
   * The attributes of the given runs, in log order. The ids go in as one JSON value: a lineage may
   * be thousands of runs long, and a DO's statement binds at most 100 values.
   */
  private attributesOf(runIds: readonly string[]): LogRowOf<"attribute">[] {
    if (runIds.length === 0) return [];
    return this.rows(
      `SELECT ${COLUMNS} FROM events WHERE type = 'attribute' AND run_id IN (SELECT value FROM json_each(?)) ORDER BY seq`,
      JSON.stringify(runIds),
    ) as LogRowOf<"attribute">[];
  }

  /**
   * The runs whose outcome is logged, in the order it was (a run's later outcomes do not move it).
   * Every run's id, read for the call: only for the rare look at every run (run-lifecycle.ts `historyGone`).
   */
  finishedRunIds(): string[] {
    return this.sql
      .exec<{ run_id: string }>(
        "SELECT run_id, MIN(seq) AS first FROM events INDEXED BY events_run_outcomes WHERE type = 'run.finished' GROUP BY run_id ORDER BY first",
      )
      .toArray()
      .map((r) => r.run_id);
  }

  /**
   * The runs whose outcome was logged after the entry `afterSeq`, in log order (a run once per
   * end), but those that have the `meta` key `<runKeyPrefix><runId>`: a reader that keeps its
   * place in the log (traces.ts: runs without a trace key). `throughSeq`: the log's last entry,
   * where the next look begins. One statement, whose rows are those runs only (not every run's id);
   * none at all when nothing can have ended since: after a look of this wake (`firstLook` false),
   * no run ended since; at the first, the DO is new (its log holds only what it appended).
   */
  finishedRunIdsAfter(afterSeq: number, firstLook: boolean, runKeyPrefix: string): { runIds: string[]; throughSeq: number } {
    if (firstLook ? this.beganEmpty && this.newestEndSeq === 0 : this.newestEndSeq <= afterSeq) return { runIds: [], throughSeq: afterSeq };
    const throughSeq = this.sql.exec<{ seq: number | null }>("SELECT MAX(seq) AS seq FROM events").one().seq ?? 0;
    const runIds = this.sql
      .exec<{ run_id: string }>(
        `SELECT run_id FROM events
         WHERE type IN ('run.started', 'run.finished') AND type = 'run.finished' AND seq > ?1 AND seq <= ?2 AND run_id IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM meta WHERE meta.key = ?3 || events.run_id)
         ORDER BY seq`,
        afterSeq,
        throughSeq,
        runKeyPrefix,
      )
      .toArray()
      .map((r) => r.run_id);
    return { runIds, throughSeq };
  }

  finished(runId: string): RunOutcome | null {
    return this.outcomeOf(runId)?.outcome ?? null;
  }

  /** When the run's `run.finished` event happened (the event's timestamp). */
  finishedAt(runId: string): string | null {
    return this.outcomeOf(runId)?.at ?? null;
  }

  /**
   * A run's stream is complete when both its outcome and its closing history event are in the
   * log. The edge may learn the outcome (from a result call) before the relay delivers the last
   * history events; `done` waits for them so a stream never ends short. A run whose outcome is
   * logged and that Temporal no longer has (`historyNeverCloses`) is complete with the history it has.
   */
  isComplete(runId: string): boolean {
    return this.outcomeOf(runId) !== null && ((this.historyStats(runId)?.closed ?? false) || this.historyNeverCloses(runId));
  }

  lastHistoryEventId(runId: string): number {
    return this.historyStats(runId)?.lastEventId ?? 0;
  }

  historyCount(runId: string): number {
    return this.historyStats(runId)?.count ?? 0;
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

  /**
   * History rows of a run after a Temporal event id, in event order (at most `limit`), read from
   * SQLite one at a time as they are asked for: a reader that stops early (a page cut by size)
   * never loads the rest, whose entries may each be up to a megabyte or more.
   */
  *historyRowsAfter(runId: string, afterEventId: number, limit: number): Generator<LogRowOf<"history">> {
    const cursor = this.sql.exec<LogRowSql>(
      `SELECT ${COLUMNS} FROM events WHERE run_id = ? AND type = 'history' AND history_event_id > ? ORDER BY history_event_id LIMIT ?`,
      runId,
      afterEventId,
      limit,
    );
    for (const r of cursor) yield toRow(r, this.sql) as LogRowOf<"history">;
  }

  /**
   * The last log seq, after `afterSeq`, of a history row of `runId` whose event id is in
   * (`afterEventId`, `throughEventId`]: an event logged after others with higher ids (null if none).
   * A backlog part that sent up to `throughEventId` must take it too, or a resume past that id skips it.
   */
  historyStraggler(runId: string, afterSeq: number, afterEventId: number, throughEventId: number): number | null {
    return (
      this.sql
        .exec<{ seq: number | null }>(
          `SELECT MAX(seq) AS seq FROM events WHERE run_id = ? AND type = 'history' AND seq > ?
             AND history_event_id > ? AND history_event_id <= ?`,
          runId,
          afterSeq,
          afterEventId,
          throughEventId,
        )
        .toArray()[0]?.seq ?? null
    );
  }

  /** The log seq of a run's history event (0 if not in the log). */
  seqOfHistoryEvent(runId: string, eventId: number): number {
    return (
      this.sql
        .exec<{ seq: number }>("SELECT seq FROM events WHERE run_id = ? AND type = 'history' AND history_event_id = ?", runId, eventId)
        .toArray()[0]?.seq ?? 0
    );
  }

  /**
   * What a history subscriber resuming after `afterEventId` is owed: later history, and thinking
   * text logged after that event, in log order; read as asked for.
   */
  streamBacklog(runId: string, afterEventId: number, afterThinkingSeq?: number): Generator<SizedLogRow> {
    // Thinking text after the last thinking entry the client saw, else after its last history event.
    const afterSeq = afterThinkingSeq ?? (afterEventId > 0 ? this.seqOfHistoryEvent(runId, afterEventId) : 0);
    return this.sizedRows(
      `SELECT ${COLUMNS} FROM events WHERE run_id = ?
         AND ((type = 'history' AND history_event_id > ?) OR (type = 'thinking' AND seq > ?))
       ORDER BY seq`,
      runId,
      afterEventId,
      afterSeq,
    );
  }

  /**
   * What the log last told `runId`'s log-view subscribers of its waiting (its last `run.waiting`
   * entry; false if none): kept from the first read of this wake on, which reads only that run's
   * `run.waiting` rows (by their source key, `waitingSourceKeyPrefix`).
   */
  loggedWaiting(runId: string): boolean {
    const known = this.derived.waitingLogged.get(runId);
    if (known !== undefined) return known;
    let waiting = false;
    if (!this.beganEmpty) {
      // No ORDER BY: the range over the source keys' index is the plan, and the run's few flips are compared here.
      const prefix = waitingSourceKeyPrefix(runId);
      let newest = 0;
      for (const r of this.sql.exec<{ seq: number; waiting: number }>(
        `SELECT seq, json_extract(data, '$.waiting') AS waiting FROM events
         WHERE source_key >= ?1 AND source_key < ?1 || char(0x10FFFF) AND type = 'run.waiting'`,
        prefix,
      )) {
        if (r.seq > newest) {
          newest = r.seq;
          waiting = r.waiting === 1;
        }
      }
    }
    this.derived.waitingLogged.set(runId, waiting);
    return waiting;
  }

  /** The Temporal event types of a run's history, newest first (waiting detection). */
  lastHistoryType(runId: string): string | null {
    return this.historyStats(runId)?.lastType ?? null;
  }

  /** What the run has in flight (in-flight.ts), kept as its history arrives: no read of the log. */
  inFlight(runId: string): number {
    return this.historyStats(runId)?.inFlight ?? 0;
  }
}
