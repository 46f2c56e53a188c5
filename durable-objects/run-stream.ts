/**
 * RunStream: one Durable Object per run, addressed by the Temporal workflow id.
 *
 * - Owns the run's event log in its own SQLite storage. Events arrive at least once (the host's
 *   history relay and publisher, the edge's own reconciliation); each carries a source key and a
 *   key already in the log is dropped, so everything downstream sees each event exactly once.
 * - Is the single writer of the run's D1 row: status changes are projected from the log, and a
 *   projection that failed is retried (by the next event or by the watchdog alarm).
 * - Fans the log out to stream subscribers. Each subscriber is a hibernatable WebSocket held by
 *   the Worker that serves the client's SSE response, so an idle run with many subscribers costs
 *   nothing while it waits (the cloudflare/agents pattern).
 * - Keeps what Temporal history does not: the steps' attributes (LLM usage, HTTP requests) and
 *   their thinking text; writes the run's trace to R2 when it ends.
 * - Runs a watchdog: a run that is not finished and has gone quiet is reconciled with Temporal
 *   through the host, so no run stays `running` after a fault.
 */
import { DurableObject } from "cloudflare:workers";
import { settleCreditsStatements } from "../src/db/credits.ts";
import { HostClient } from "../src/host-client.ts";
import type { RunEvent } from "../src/shared/host-api.ts";
import { aggregate, type Attribute } from "../src/shared/aggregations.ts";
import { CLOSE_EVENT_TYPES, type SerializedHistoryEvent } from "../src/shared/history-events.ts";
import { runFinishedEvent } from "../src/shared/run-events.ts";
import { isTerminal, type RunStatus } from "../src/shared/run-status.ts";
import { sseFrame } from "../src/sse/frames.ts";
import { stepRunId } from "../src/shared/step-run-id.ts";
import { buildTrace, traceKey } from "./trace.ts";

/** A run with no new event for this long is checked against Temporal (overridable for tests). */
export const DEFAULT_WATCHDOG_QUIET_MS = 30_000;
/** Event types that change the run's D1 row; the others only live in the log. */
const PROJECTED_TYPES: ReadonlySet<string> = new Set(["run.started", "run.finished", "attribute", "step"]);
/** The longest the watchdog waits between checks of a run that stays quiet. */
export const MAX_WATCHDOG_INTERVAL_MS = 10 * 60_000;
/** Most history events sent in one SSE `history` frame when replaying a backlog. */
export const REPLAY_BATCH_SIZE = 200;
const CLOSE_EVENT_TYPES_SQL = CLOSE_EVENT_TYPES.map((t) => `'${t}'`).join(", ");
/** Close code the DO uses to tell the Worker the stream is complete (after `done`). */
export const STREAM_DONE_CLOSE_CODE = 4000;

export interface RecordResult {
  accepted: number;
  duplicates: number;
  /** The signed push carrying these events was seen before: nothing was recorded. */
  replayed?: boolean;
}

/** What the Worker needs before it opens a stream (404/204 decisions). */
export interface StreamState {
  runId: string | null;
  finished: boolean;
  lastEventId: number;
}

/**
 * One message from the DO to the Worker holding a subscriber's SSE response. The `history` view
 * (Workflow API) gets ready-made SSE frames; the `log` view (the other API families, which each
 * shape their own events) gets raw log entries and a final `done`.
 */
export interface SubscriberMessage {
  sse?: string;
  /** Temporal event id of the last history event in this frame, if it carried any. */
  eventId?: number;
  /**
   * History view: the SSE id of this frame, to resume from: `<eventId>` for a history frame,
   * `<eventId>.<seq>` for a thinking frame (the last Temporal event id sent, and the thinking
   * entry's log seq). See parseHistoryCursor (src/sse/last-event-id.ts).
   */
  cursor?: string;
  entry?: LogEntry;
  done?: RunOutcome;
}

/** How a run ended, as its `run.finished` event says. */
export interface RunOutcome {
  status: RunStatus;
  output?: unknown;
  error?: string | null;
  newRunId?: string | null;
}

/** A log row as the `log` view sends it; `seq` orders the whole log and is its event id. */
export interface LogEntry {
  seq: number;
  type: RunEvent["type"];
  at: string;
  data: Record<string, unknown>;
}

export type SubscriptionView = "history" | "log";

interface SubscriberAttachment {
  runId: string;
  view: SubscriptionView;
  includePayloads: boolean;
  /** history view: last Temporal event id sent; log view: last log seq sent. */
  lastEventId: number;
  /** history view: log seq of the last thinking entry sent (0: none yet, or none since the client's history event). */
  lastThinkingSeq?: number;
}

interface LogRow extends Record<string, SqlStorageValue> {
  seq: number;
  source_key: string;
  type: string;
  at: string;
  run_id: string | null;
  history_event_id: number | null;
  data: string;
}

export class RunStream extends DurableObject<Env> {
  private readonly sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    ctx.blockConcurrencyWhile(async () => {
      this.sql.exec(`CREATE TABLE IF NOT EXISTS events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        source_key TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL,
        at TEXT NOT NULL,
        run_id TEXT,
        history_event_id INTEGER,
        data TEXT NOT NULL,
        projected INTEGER NOT NULL DEFAULT 0
      )`);
      this.sql.exec("CREATE INDEX IF NOT EXISTS events_run_history ON events (run_id, history_event_id)");
      this.sql.exec("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)");
      // Nonces of the signed pushes this run received, while they could still pass the time check.
      this.sql.exec("CREATE TABLE IF NOT EXISTS push_nonces (nonce TEXT PRIMARY KEY, expires_at INTEGER NOT NULL)");
    });
  }

  // ---------------------------------------------------------------- writing the log

  /**
   * Appends new events and pushes them to subscribers, then projects status changes into D1.
   * Inserting and broadcasting happen with no await in between, so every subscriber sees the log
   * in order, with nothing missed and nothing twice, whatever else is in flight.
   */
  async record(workflowId: string, events: RunEvent[], nonce?: { nonce: string; expiresAt: number }): Promise<RecordResult> {
    if (nonce) {
      this.sql.exec("DELETE FROM push_nonces WHERE expires_at < ?", Date.now());
      const fresh = this.sql.exec("INSERT OR IGNORE INTO push_nonces (nonce, expires_at) VALUES (?, ?) RETURNING nonce", nonce.nonce, nonce.expiresAt).toArray();
      if (fresh.length === 0) return { accepted: 0, duplicates: 0, replayed: true };
    }
    this.setMeta("workflowId", workflowId);
    const fresh: LogRow[] = [];
    for (const event of events) {
      const data = event.data as Record<string, unknown>;
      const runId = typeof data.runId === "string" ? data.runId : null;
      const historyEventId = event.type === "history" ? Number((data.event as SerializedHistoryEvent | undefined)?.eventId) : null;
      const row = this.sql
        .exec<LogRow>(
          `INSERT OR IGNORE INTO events (source_key, type, at, run_id, history_event_id, data, projected)
           VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING seq, source_key, type, at, run_id, history_event_id, data`,
          event.sourceKey,
          event.type,
          event.at,
          runId,
          Number.isFinite(historyEventId) ? historyEventId : null,
          JSON.stringify(event.data),
          PROJECTED_TYPES.has(event.type) ? 0 : 1,
        )
        .toArray()[0];
      if (row) fresh.push(row);
    }
    if (fresh.length > 0) {
      this.setMeta("quietChecks", "0");
      this.broadcast(fresh);
    }
    await this.projectPending(workflowId);
    if (fresh.some((r) => r.type === "history")) await this.projectWaiting(workflowId);
    await this.writeTraces(workflowId);
    await this.armWatchdog();
    return { accepted: fresh.length, duplicates: events.length - fresh.length };
  }

  /** The attributes recorded by the run's steps (every run of the workflow), in order. */
  async attributes(): Promise<Attribute[]> {
    return this.sql
      .exec<{ data: string }>("SELECT data FROM events WHERE type = 'attribute' ORDER BY seq")
      .toArray()
      .map((r) => (JSON.parse(r.data) as { attribute: Attribute }).attribute);
  }

  /** The log in order (for tests and for readers that want raw events). */
  async events(afterSeq = 0): Promise<Array<RunEvent & { seq: number }>> {
    return this.sql
      .exec<LogRow>("SELECT * FROM events WHERE seq > ? ORDER BY seq", afterSeq)
      .toArray()
      .map((r) => ({ seq: r.seq, sourceKey: r.source_key, type: r.type as RunEvent["type"], at: r.at, data: JSON.parse(r.data) }));
  }

  // ---------------------------------------------------------------- D1 projection

  private async projectPending(workflowId: string): Promise<void> {
    const pending = this.sql.exec<LogRow>("SELECT * FROM events WHERE projected = 0 ORDER BY seq").toArray();
    for (const row of pending) {
      await this.project(workflowId, row);
      this.sql.exec("UPDATE events SET projected = 1 WHERE seq = ?", row.seq);
    }
  }

  private async project(workflowId: string, row: LogRow): Promise<void> {
    const now = new Date().toISOString();
    const data = JSON.parse(row.data) as Record<string, unknown>;
    if (row.type === "run.started") {
      // Only a scheduled row moves to running: a late start never undoes a finish.
      await this.env.DB.prepare(
        `UPDATE runs SET status = 'running', temporal_run_id = ?, started_at = COALESCE(started_at, ?), updated_at = ?
         WHERE temporal_workflow_id = ? AND status = 'scheduled'`,
      )
        .bind(String(data.runId), row.at, now, workflowId)
        .run();
    } else if (row.type === "attribute") {
      // Totals for listing and billing; the attributes themselves stay in the log.
      const totals = aggregate([data.attribute as Attribute]);
      await this.env.DB.prepare(
        `UPDATE runs SET cost_total = cost_total + ?, tokens_input = tokens_input + ?, tokens_output = tokens_output + ?,
           tokens_total = tokens_total + ?, http_requests = http_requests + ?, updated_at = ?
         WHERE temporal_workflow_id = ?`,
      )
        .bind(totals.cost.total, totals.tokens.input, totals.tokens.output, totals.tokens.total, totals.httpRequests.total, now, workflowId)
        .run();
    } else if (row.type === "step") {
      await this.projectStep(workflowId, row, data);
    } else if (row.type === "run.finished") {
      // A continued-as-new run is not the end of the workflow: the row follows the new run.
      if (data.status === "continued_as_new" && typeof data.newRunId === "string") {
        await this.env.DB.prepare("UPDATE runs SET temporal_run_id = ?, updated_at = ? WHERE temporal_workflow_id = ?")
          .bind(data.newRunId, now, workflowId)
          .run();
        return;
      }
      const finish = this.env.DB.prepare(
        `UPDATE runs SET status = ?, output = ?, error = ?, temporal_run_id = ?, completed_at = ?,
           started_at = COALESCE(started_at, ?), updated_at = ?, waiting_since = NULL
         WHERE temporal_workflow_id = ?`,
      ).bind(
        String(data.status),
        data.output === undefined || data.output === null ? null : JSON.stringify(data.output),
        (data.error as string | null | undefined) ?? null,
        String(data.runId),
        row.at,
        row.at,
        now,
        workflowId,
      );
      // The outcome and the credit settlement land together (one D1 transaction), keyed by the
      // log row so that a retried projection writes the same ledger row (and is ignored).
      await this.env.DB.batch([finish, ...settleCreditsStatements(this.env.DB, workflowId, `charge:${workflowId}:${row.seq}`, now)]);
    }
  }

  /**
   * One step_runs row per attempt. A later state never goes back to `running` (the `started` push
   * of an attempt may arrive after its end).
   */
  private async projectStep(workflowId: string, row: LogRow, data: Record<string, unknown>): Promise<void> {
    const stepId = String(data.activityId);
    const attempt = Number(data.attempt) || 1;
    const state = data.state === "completed" || data.state === "failed" ? data.state : "running";
    await this.env.DB.prepare(
      `INSERT INTO step_runs (id, run_id, organization_id, step_id, step_name, attempt, status, outputs, error, created_at, updated_at)
       SELECT ?1, r.id, r.organization_id, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8 FROM runs r WHERE r.temporal_workflow_id = ?9
       ON CONFLICT (run_id, step_id, attempt) DO UPDATE SET
         status = CASE WHEN excluded.status = 'running' THEN step_runs.status ELSE excluded.status END,
         outputs = COALESCE(excluded.outputs, step_runs.outputs),
         error = COALESCE(excluded.error, step_runs.error),
         created_at = MIN(step_runs.created_at, excluded.created_at),
         updated_at = MAX(step_runs.updated_at, excluded.updated_at)`,
    )
      .bind(
        await stepRunId(workflowId, stepId, attempt),
        stepId,
        typeof data.stepName === "string" ? data.stepName : null,
        attempt,
        state,
        data.outputs === undefined ? null : JSON.stringify(data.outputs),
        typeof data.error === "string" ? data.error : null,
        row.at,
        workflowId,
      )
      .run();
  }

  /**
   * Is the latest run blocked on a signal or human input? Yes when its history so far ends with a
   * completed workflow task and nothing is in flight: every activity, timer and child workflow it
   * started has ended. (A timer is a durable pause, not waiting for someone.)
   */
  private isWaiting(runId: string): boolean {
    // Cheap checks first (this runs for every history batch); the count scans the run's history.
    const last = this.sql
      .exec<{ type: string }>(
        "SELECT json_extract(data, '$.event.eventType') AS type FROM events WHERE run_id = ? AND type = 'history' ORDER BY history_event_id DESC LIMIT 1",
        runId,
      )
      .toArray()[0];
    if (last?.type !== "EVENT_TYPE_WORKFLOW_TASK_COMPLETED" || this.finishedEvent(runId)) return false;
    const t = (name: string) => `'EVENT_TYPE_${name}'`;
    const row = this.sql
      .exec<{ open: number | null }>(
        `SELECT
           SUM(CASE WHEN type IN (${t("ACTIVITY_TASK_SCHEDULED")}, ${t("TIMER_STARTED")}, ${t("START_CHILD_WORKFLOW_EXECUTION_INITIATED")}) THEN 1
                    WHEN type IN (${t("ACTIVITY_TASK_COMPLETED")}, ${t("ACTIVITY_TASK_FAILED")}, ${t("ACTIVITY_TASK_TIMED_OUT")}, ${t("ACTIVITY_TASK_CANCELED")},
                                  ${t("TIMER_FIRED")}, ${t("TIMER_CANCELED")}, ${t("START_CHILD_WORKFLOW_EXECUTION_FAILED")},
                                  ${t("CHILD_WORKFLOW_EXECUTION_COMPLETED")}, ${t("CHILD_WORKFLOW_EXECUTION_FAILED")}, ${t("CHILD_WORKFLOW_EXECUTION_CANCELED")},
                                  ${t("CHILD_WORKFLOW_EXECUTION_TIMED_OUT")}, ${t("CHILD_WORKFLOW_EXECUTION_TERMINATED")}) THEN -1
                    ELSE 0 END) AS open
         FROM (SELECT json_extract(data, '$.event.eventType') AS type FROM events WHERE run_id = ? AND type = 'history')`,
        runId,
      )
      .toArray()[0];
    return (row?.open ?? 0) === 0;
  }

  /** Keeps `runs.waiting_since` in step with isWaiting (only while the row is `running`). */
  private async projectWaiting(workflowId: string): Promise<void> {
    const runId = this.latestRunId();
    if (!runId) return;
    const waiting = this.isWaiting(runId);
    if ((this.getMeta("waiting") === "1") === waiting) return;
    const now = new Date().toISOString();
    await this.env.DB.prepare(
      waiting
        ? "UPDATE runs SET waiting_since = ?, updated_at = ? WHERE temporal_workflow_id = ? AND status = 'running' AND waiting_since IS NULL"
        : "UPDATE runs SET waiting_since = NULL, updated_at = ? WHERE temporal_workflow_id = ? AND waiting_since IS NOT NULL",
    )
      .bind(...(waiting ? [now, now, workflowId] : [now, workflowId]))
      .run();
    this.setMeta("waiting", waiting ? "1" : "0");
  }

  // ---------------------------------------------------------------- trace log

  /** Writes the trace of every finished run that has none yet (durably, to R2). */
  private async writeTraces(workflowId: string): Promise<void> {
    const finishedRuns = this.sql.exec<{ run_id: string }>("SELECT run_id FROM events WHERE type = 'run.finished'").toArray();
    for (const { run_id: runId } of finishedRuns) {
      if (!this.getMeta(`trace:${runId}`) && this.isStreamComplete(runId)) await this.writeTrace(workflowId, runId);
    }
  }

  private async writeTrace(workflowId: string, runId: string): Promise<string> {
    const finished = this.finishedEvent(runId)! as { status: string; output?: unknown; error?: string | null };
    const events = this.sql
      .exec<{ data: string }>("SELECT data FROM events WHERE run_id = ? AND type = 'history' ORDER BY history_event_id", runId)
      .toArray()
      .map((r) => (JSON.parse(r.data) as { event: SerializedHistoryEvent }).event);
    const attributes = new Map<string, unknown[]>();
    for (const row of this.sql.exec<{ data: string }>("SELECT data FROM events WHERE run_id = ? AND type = 'attribute' ORDER BY seq", runId)) {
      const { activityId, attribute } = JSON.parse(row.data) as { activityId: string; attribute: unknown };
      attributes.set(activityId, [...(attributes.get(activityId) ?? []), attribute]);
    }
    const trace = buildTrace({ workflowId, runId, status: finished.status, output: finished.output, error: finished.error ?? null }, events, attributes);
    const key = traceKey(workflowId, runId);
    await this.env.TRACES.put(key, JSON.stringify(trace), { httpMetadata: { contentType: "application/json" } });
    this.setMeta(`trace:${runId}`, key);
    return key;
  }

  /**
   * The trace of `runId` (or the latest run): its R2 key once the run is finished and its history
   * complete, written now if it was not yet; null while the run is still going.
   */
  async traceFor(runId?: string): Promise<{ runId: string; key: string } | null> {
    const id = runId ?? this.latestRunId();
    if (!id || !this.isStreamComplete(id)) return null;
    const workflowId = this.getMeta("workflowId");
    if (!workflowId) return null;
    return { runId: id, key: this.getMeta(`trace:${id}`) ?? (await this.writeTrace(workflowId, id)) };
  }

  // ---------------------------------------------------------------- run state, from the log

  private latestRunId(): string | null {
    const newest = this.sql
      .exec<{ run_id: string; type: string; data: string }>(
        "SELECT run_id, type, data FROM events WHERE run_id IS NOT NULL ORDER BY seq DESC LIMIT 1",
      )
      .toArray()[0];
    if (!newest) return null;
    const data = JSON.parse(newest.data) as { newRunId?: string | null };
    return newest.type === "run.finished" && data.newRunId ? data.newRunId : newest.run_id;
  }

  private finishedEvent(runId: string): RunOutcome | null {
    const row = this.sql
      .exec<{ data: string }>("SELECT data FROM events WHERE type = 'run.finished' AND run_id = ? LIMIT 1", runId)
      .toArray()[0];
    return row ? (JSON.parse(row.data) as RunOutcome) : null;
  }

  /**
   * A run's stream is complete when both its outcome and its closing history event are in the
   * log. The edge may learn the outcome (from a result call) before the relay delivers the last
   * history events; `done` waits for them so a stream never ends short.
   */
  private isStreamComplete(runId: string): boolean {
    if (!this.finishedEvent(runId)) return false;
    return (
      this.sql
        .exec(
          `SELECT 1 FROM events WHERE run_id = ? AND type = 'history' AND json_extract(data, '$.event.eventType') IN (${CLOSE_EVENT_TYPES_SQL}) LIMIT 1`,
          runId,
        )
        .toArray().length > 0
    );
  }

  private lastHistoryEventId(runId: string): number {
    return (
      this.sql
        .exec<{ last: number | null }>("SELECT MAX(history_event_id) AS last FROM events WHERE run_id = ? AND type = 'history'", runId)
        .toArray()[0]?.last ?? 0
    );
  }

  /** Stream state of `runId`, or of the latest run when none is given. */
  async streamState(runId?: string): Promise<StreamState> {
    const id = runId ?? this.latestRunId();
    if (!id) return { runId: null, finished: false, lastEventId: 0 };
    return { runId: id, finished: this.isStreamComplete(id), lastEventId: this.lastHistoryEventId(id) };
  }

  /**
   * A page of a run's history, as streams send it: events after `afterEventId`, at most `limit`.
   * `nextAfterEventId` is null on the last page of a finished run.
   */
  async historyPage(runId: string | undefined, afterEventId: number, limit: number, includePayloads: boolean) {
    const id = runId ?? this.latestRunId();
    if (!id) return { runId: null, events: [], nextAfterEventId: null, complete: false };
    const rows = this.sql
      .exec<LogRow>(
        "SELECT * FROM events WHERE run_id = ? AND type = 'history' AND history_event_id > ? ORDER BY history_event_id LIMIT ?",
        id,
        afterEventId,
        limit,
      )
      .toArray();
    const events = rows.map((r) => this.historyEventForSubscriber(r, includePayloads));
    const complete = this.isStreamComplete(id);
    const last = rows.at(-1)?.history_event_id ?? afterEventId;
    const more = rows.length === limit || !complete;
    return { runId: id, events, nextAfterEventId: more ? last : null, complete };
  }

  private workflowSummary(runId: string) {
    const history = (eventId: number) =>
      this.sql
        .exec<{ data: string }>("SELECT data FROM events WHERE run_id = ? AND type = 'history' AND history_event_id = ?", runId, eventId)
        .toArray()[0];
    const startedRow = history(1);
    const started = startedRow ? ((JSON.parse(startedRow.data) as { event: SerializedHistoryEvent }).event) : null;
    const finished = this.finishedEvent(runId);
    const lastEventId = this.lastHistoryEventId(runId);
    const lastRow = finished && lastEventId ? history(lastEventId) : undefined;
    const closeTime = lastRow ? (JSON.parse(lastRow.data) as { event: SerializedHistoryEvent }).event.eventTime : null;
    const count = this.sql
      .exec<{ n: number }>("SELECT COUNT(*) AS n FROM events WHERE run_id = ? AND type = 'history'", runId)
      .toArray()[0]!.n;
    const taskQueue = (started?.attributes.taskQueue as { name?: string } | undefined)?.name ?? null;
    return {
      workflowId: this.getMeta("workflowId"),
      runId,
      status: finished?.status ?? "running",
      startTime: started?.eventTime ?? null,
      closeTime,
      historyLength: count,
      taskQueue,
    };
  }

  // ---------------------------------------------------------------- subscribers

  /**
   * `GET /subscribe?runId=&after=&includePayloads=&workflowEvent=&view=` with `Upgrade: websocket`,
   * from the Worker only. Sends the backlog after `after`, then live events, then `done`.
   */
  override async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname !== "/subscribe" || request.headers.get("upgrade") !== "websocket") {
      return new Response("not found", { status: 404 });
    }
    const requestedRunId = url.searchParams.get("runId");
    const runId = requestedRunId || this.latestRunId() || url.searchParams.get("fallbackRunId");
    if (!runId) return new Response("run has no events yet and no run id was given", { status: 409 });
    if (url.searchParams.get("workflowId")) this.setMeta("workflowId", url.searchParams.get("workflowId")!);

    const { 0: client, 1: server } = new WebSocketPair();
    this.ctx.acceptWebSocket(server, [runId]);
    const attachment: SubscriberAttachment = {
      runId,
      view: url.searchParams.get("view") === "log" ? "log" : "history",
      includePayloads: url.searchParams.get("includePayloads") === "true",
      lastEventId: Math.max(0, Number(url.searchParams.get("after") ?? 0) || 0),
    };
    // History view cursors may be `<eventId>.<thinkingSeq>` (the id of a thinking frame).
    const composite = /^(\d+)\.(\d+)$/.exec(url.searchParams.get("after") ?? "");
    if (composite) {
      attachment.lastEventId = Number(composite[1]);
      attachment.lastThinkingSeq = Number(composite[2]);
    }
    if (attachment.view === "log") {
      // Synchronous from here, as below: backlog, then live entries, with no gap.
      const backlog = this.sql.exec<LogRow>("SELECT * FROM events WHERE run_id = ? AND seq > ? ORDER BY seq", runId, attachment.lastEventId).toArray();
      this.sendEntries(server, attachment, backlog);
      server.serializeAttachment(attachment);
      if (this.isStreamComplete(runId)) this.sendDone(server, attachment, this.finishedEvent(runId)!);
      return new Response(null, { status: 101, webSocket: client });
    }
    // Everything below is synchronous: no event can slip in between the backlog and live delivery.
    if (url.searchParams.get("workflowEvent") !== "false") {
      this.send(server, { sse: sseFrame({ event: "workflow", data: this.workflowSummary(runId) }) });
    }
    // History after the client's last event id, and the thinking text logged after the last
    // thinking entry it saw (composite id), else after that history event.
    const afterSeq =
      attachment.lastThinkingSeq ??
      this.sql
        .exec<{ seq: number }>("SELECT seq FROM events WHERE run_id = ? AND type = 'history' AND history_event_id = ?", runId, attachment.lastEventId)
        .toArray()[0]?.seq ??
      0;
    const backlog = this.sql
      .exec<LogRow>(
        `SELECT * FROM events WHERE run_id = ?
           AND ((type = 'history' AND history_event_id > ?) OR (type = 'thinking' AND seq > ?))
         ORDER BY seq`,
        runId,
        attachment.lastEventId,
        attachment.lastEventId > 0 || attachment.lastThinkingSeq !== undefined ? afterSeq : 0,
      )
      .toArray();
    this.sendRows(server, attachment, backlog);
    server.serializeAttachment(attachment);
    if (this.isStreamComplete(runId)) this.sendDone(server, attachment, this.finishedEvent(runId)!);
    return new Response(null, { status: 101, webSocket: client });
  }

  private broadcast(rows: LogRow[]): void {
    const byRun = new Map<string, LogRow[]>();
    for (const row of rows) {
      if (!row.run_id) continue;
      byRun.set(row.run_id, [...(byRun.get(row.run_id) ?? []), row]);
    }
    for (const [runId, runRows] of byRun) {
      const streamed = runRows.filter((r) => r.type === "history" || r.type === "thinking");
      const finished = this.isStreamComplete(runId) ? this.finishedEvent(runId) : null;
      for (const ws of this.ctx.getWebSockets(runId)) {
        const attachment = ws.deserializeAttachment() as SubscriberAttachment | null;
        if (!attachment) continue;
        const before = `${attachment.lastEventId}.${attachment.lastThinkingSeq ?? 0}`;
        if (attachment.view === "log") this.sendEntries(ws, attachment, runRows);
        else this.sendRows(ws, attachment, streamed);
        if (`${attachment.lastEventId}.${attachment.lastThinkingSeq ?? 0}` !== before) ws.serializeAttachment(attachment);
        if (finished) this.sendDone(ws, attachment, finished);
      }
    }
  }

  /**
   * Sends log rows in log order: runs of history events as `history` frames (only events after
   * the subscriber's last one, at most REPLAY_BATCH_SIZE a frame), thinking text as `thinking`.
   */
  private sendRows(ws: WebSocket, attachment: SubscriberAttachment, rows: LogRow[]): void {
    let batch: LogRow[] = [];
    const flush = () => {
      if (batch.length > 0) this.sendHistory(ws, attachment, batch.sort((a, b) => a.history_event_id! - b.history_event_id!));
      batch = [];
    };
    for (const row of rows) {
      if (row.type === "history") {
        if (row.history_event_id! <= attachment.lastEventId || batch.some((b) => b.history_event_id === row.history_event_id)) continue;
        batch.push(row);
        if (batch.length >= REPLAY_BATCH_SIZE) flush();
      } else if (row.type === "thinking") {
        flush();
        if (row.seq <= (attachment.lastThinkingSeq ?? 0)) continue;
        attachment.lastThinkingSeq = row.seq;
        // A composite id: the history event id the client has, then this entry's log seq, so
        // Last-Event-ID resumes after exactly this thinking text.
        const cursor = `${attachment.lastEventId}.${row.seq}`;
        const { activityId, stepName, attempt, text } = JSON.parse(row.data) as Record<string, unknown>;
        this.send(ws, { sse: sseFrame({ event: "thinking", id: cursor, data: { activityId, stepName, attempt, text } }), cursor });
      }
    }
    flush();
  }

  /** The log view: every entry after the subscriber's last one, as is. */
  private sendEntries(ws: WebSocket, attachment: SubscriberAttachment, rows: LogRow[]): void {
    for (const row of rows) {
      if (row.seq <= attachment.lastEventId) continue;
      attachment.lastEventId = row.seq;
      const entry: LogEntry = { seq: row.seq, type: row.type as RunEvent["type"], at: row.at, data: JSON.parse(row.data) as Record<string, unknown> };
      this.send(ws, { entry });
    }
  }

  private sendHistory(ws: WebSocket, attachment: SubscriberAttachment, rows: LogRow[]): void {
    const events = rows.map((r) => this.historyEventForSubscriber(r, attachment.includePayloads));
    const lastEventId = rows[rows.length - 1]!.history_event_id!;
    attachment.lastEventId = lastEventId;
    this.send(ws, { sse: sseFrame({ event: "history", id: lastEventId, data: events }), eventId: lastEventId, cursor: String(lastEventId) });
  }

  private historyEventForSubscriber(row: LogRow, includePayloads: boolean): SerializedHistoryEvent {
    const event = (JSON.parse(row.data) as { event: SerializedHistoryEvent }).event;
    if (includePayloads) return event;
    const { payloads: _omitted, ...withoutPayloads } = event;
    return withoutPayloads;
  }

  private sendDone(ws: WebSocket, attachment: SubscriberAttachment, finished: RunOutcome): void {
    if (attachment.view === "log") {
      this.send(ws, { done: { status: finished.status, output: finished.output ?? null, error: finished.error ?? null, newRunId: finished.newRunId ?? null } });
      ws.close(STREAM_DONE_CLOSE_CODE, "done");
      return;
    }
    const data: { reason: string; newRunId?: string } = { reason: finished.status };
    if (finished.newRunId) data.newRunId = finished.newRunId;
    this.send(ws, { sse: sseFrame({ event: "done", data }) });
    ws.close(STREAM_DONE_CLOSE_CODE, "done");
  }

  private send(ws: WebSocket, message: SubscriberMessage): void {
    try {
      ws.send(JSON.stringify(message));
    } catch {
      // The subscriber is gone; webSocketClose cleans up.
    }
  }

  override async webSocketMessage(): Promise<void> {
    // Subscribers only listen.
  }

  override async webSocketClose(ws: WebSocket, code: number): Promise<void> {
    // The Worker closed (its client left): nothing to keep. Closing our side completes the handshake.
    try {
      ws.close(code === 1005 ? 1000 : code, "bye");
    } catch {
      /* already closed */
    }
  }

  override async webSocketError(ws: WebSocket): Promise<void> {
    try {
      ws.close(1011, "error");
    } catch {
      /* already closed */
    }
  }

  // ---------------------------------------------------------------- watchdog

  private watchdogQuietMs(): number {
    const configured = Number(this.env.RUN_WATCHDOG_QUIET_MS);
    return Number.isFinite(configured) && configured > 0 ? configured : DEFAULT_WATCHDOG_QUIET_MS;
  }

  /** The workflow is over: its latest run ended (not by continuing as new) and its log is complete. */
  private isFinished(): boolean {
    const latest = this.latestRunId();
    const finished = latest ? this.finishedEvent(latest) : null;
    return finished !== null && isTerminal(finished.status) && finished.status !== "continued_as_new" && this.isStreamComplete(latest!);
  }

  private async armWatchdog(): Promise<void> {
    const pendingProjection = this.sql.exec("SELECT 1 FROM events WHERE projected = 0 LIMIT 1").toArray().length > 0;
    const latest = this.latestRunId();
    const traceMissing = latest !== null && this.isStreamComplete(latest) && !this.getMeta(`trace:${latest}`);
    if (this.isFinished() && !pendingProjection && !traceMissing) {
      await this.ctx.storage.deleteAlarm();
      return;
    }
    // Each check that finds the run still quiet doubles the wait, so a run that waits for a
    // human for days costs a few checks an hour, not one every 30 s.
    const quietChecks = Number(this.getMeta("quietChecks") ?? 0);
    const delay = Math.min(this.watchdogQuietMs() * 2 ** Math.min(quietChecks, 16), MAX_WATCHDOG_INTERVAL_MS);
    await this.ctx.storage.setAlarm(Date.now() + delay);
  }

  /** Watchdog: finish failed projections; ask Temporal (via the host) about a quiet open run. */
  override async alarm(): Promise<void> {
    const workflowId = this.getMeta("workflowId");
    if (!workflowId) return;
    try {
      await this.projectPending(workflowId);
      await this.writeTraces(workflowId);
      if (!this.isFinished()) {
        await this.reconcile(workflowId);
        this.setMeta("quietChecks", String(Number(this.getMeta("quietChecks") ?? 0) + 1));
      }
    } finally {
      await this.armWatchdog();
    }
  }

  private async reconcile(workflowId: string): Promise<void> {
    const host = new HostClient(this.env);
    try {
      // Ask the host to relay this run's history again: what we already have is dropped as duplicate.
      await host.follow(workflowId);
      const result = await host.result(workflowId, 0);
      if (isTerminal(result.status)) {
        await this.record(workflowId, [runFinishedEvent(result)]);
      }
    } catch (err) {
      console.warn(JSON.stringify({ level: "warn", message: "run watchdog could not reach the host", workflowId, error: String(err) }));
    }
  }

  // ---------------------------------------------------------------- meta

  private getMeta(key: string): string | null {
    return this.sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = ?", key).toArray()[0]?.value ?? null;
  }

  private setMeta(key: string, value: string): void {
    this.sql.exec("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", key, value);
  }
}
