/**
 * Subscribers: one hibernatable WebSocket per stream client, held by the Worker that serves the
 * client's SSE response (the cloudflare/agents pattern), so an idle run with many subscribers
 * costs nothing while it waits. Each gets the backlog after its cursor, then live log rows, then
 * `done`, as structured messages (messages.ts); the routes turn them into SSE.
 *
 * Sending the backlog and registering the socket happen with no await in between, and so do
 * appending to the log and broadcasting: every subscriber sees the log in order, nothing missed,
 * nothing twice.
 */
import type { SerializedHistoryEvent } from "../../src/shared/history-events.ts";
import {
  BACKLOG_PART_MAX_BYTES,
  LOG_VIEW_SKIPPED_TYPE,
  REPLAY_BATCH_MAX_PAYLOAD_BYTES,
  REPLAY_BATCH_SIZE,
  STREAM_DONE_CLOSE_CODE,
  STREAM_MORE_CLOSE_CODE,
} from "./constants.ts";
import { toEntry, type EventLog, type LogRow, type LogRowOf, type SizedLogRow } from "./event-log.ts";
import type { SubscriberMessage, SubscriptionView, WorkflowSummary } from "./messages.ts";
import type { FinishGate } from "./reset-mark.ts";

interface SubscriberAttachment {
  runId: string;
  view: SubscriptionView;
  includePayloads: boolean;
  /** history view: last Temporal event id sent; log view: last log seq sent. */
  lastEventId: number;
}

/** What a subscription asks for (`GET /subscribe?runId=&after=&includePayloads=&workflowEvent=&view=`). */
export interface SubscribeRequest {
  runId: string;
  view: SubscriptionView;
  includePayloads: boolean;
  after: number;
  /**
   * history view: the log seq of the last `thinking` frame the client has, when it resumes from a
   * thinking frame's id (`<eventId>.<seq>`); thinking text up to it is not sent again.
   */
  afterThinkingSeq?: number;
  /** history view: send the `workflow` summary first. */
  workflowEvent: boolean;
}

/**
 * A subscription's `after`: a number, or on the history view a thinking or `done` frame's composite
 * id `<eventId>.<seq>` (`afterThinkingSeq`: the seq).
 */
export function parseAfter(raw: string | null): { after: number; afterThinkingSeq?: number } {
  const composite = /^(\d{1,15})\.(\d{1,15})$/.exec(raw ?? "");
  if (composite) return { after: Number(composite[1]), afterThinkingSeq: Number(composite[2]) };
  return { after: Math.max(0, Number(raw ?? 0) || 0) };
}

export function parseSubscribeRequest(url: URL, runId: string): SubscribeRequest {
  return {
    runId,
    view: url.searchParams.get("view") === "log" ? "log" : "history",
    includePayloads: url.searchParams.get("includePayloads") === "true",
    ...parseAfter(url.searchParams.get("after")),
    workflowEvent: url.searchParams.get("workflowEvent") !== "false",
  };
}

export function withoutPayloads(event: SerializedHistoryEvent, includePayloads: boolean): SerializedHistoryEvent {
  if (includePayloads) return event;
  const { payloads: _omitted, ...rest } = event;
  return rest;
}

export class Subscribers {
  constructor(
    private readonly ctx: DurableObjectState,
    private readonly log: EventLog,
    private readonly summary: (runId: string) => WorkflowSummary,
    /** Whether a reset pending in this DO may be replacing the run (reset-mark.ts): not "project" while it may. */
    private readonly resetGate: (runId: string) => FinishGate = () => "project",
  ) {}

  /**
   * The `done` a subscriber of a finished run gets, or null while it must wait. The history view
   * always gets the run's own end (Output's streams end with the run). The log view follows the
   * workflow: an end that a reset caused names the reset's run, and while a reset that may replace
   * the run is pending (its route has not heard from the host yet), the end waits for word of it.
   */
  private doneFor(runId: string, view: SubscriptionView): SubscriberMessage | null {
    const finished = this.log.isComplete(runId) ? this.log.finished(runId) : null;
    if (!finished) return null;
    if (view === "log") {
      const resetRunId = this.log.resetSuccessor(runId);
      if (resetRunId) return { kind: "done", outcome: finished, resetRunId };
      // "drop": the reset's run was seen already, and its `run.started` (naming it) is on its way.
      if (this.resetGate(runId) !== "project") return null;
      return { kind: "done", outcome: finished };
    }
    return { kind: "done", outcome: finished, seq: this.log.seqOfHistoryEvent(runId, this.log.lastHistoryEventId(runId)) };
  }

  /**
   * Sends the `done` each subscriber of a finished run was waiting for: after a reset's mark ended
   * (its run recorded, or the reset refused), log-view subscribers of the run it may have replaced.
   */
  releaseHeld(): void {
    for (const ws of this.ctx.getWebSockets()) {
      const attachment = ws.deserializeAttachment() as SubscriberAttachment | null;
      // A subscriber that got its `done` already is closing.
      if (attachment?.view !== "log" || ws.readyState !== WebSocket.READY_STATE_OPEN) continue;
      const done = this.doneFor(attachment.runId, attachment.view);
      if (done) this.sendDone(ws, done);
    }
  }

  /**
   * Sends `done` to the open subscribers of `runId`, which became complete with no new row: the
   * watchdog found that Temporal no longer has it, so its closing history event never comes.
   */
  releaseRun(runId: string): void {
    for (const ws of this.ctx.getWebSockets(runId)) {
      const attachment = ws.deserializeAttachment() as SubscriberAttachment | null;
      if (!attachment || ws.readyState !== WebSocket.READY_STATE_OPEN) continue;
      const done = this.doneFor(runId, attachment.view);
      if (done) this.sendDone(ws, done);
    }
  }

  /** Accepts a subscriber and sends what it is owed so far; the Worker gets the other end. */
  accept(request: SubscribeRequest): WebSocket {
    const { 0: client, 1: server } = new WebSocketPair();
    this.ctx.acceptWebSocket(server, [request.runId]);
    const attachment: SubscriberAttachment = {
      runId: request.runId,
      view: request.view,
      includePayloads: request.includePayloads,
      lastEventId: request.after,
    };
    // Synchronous from here: backlog, then live rows, with no gap.
    if (attachment.view === "log") {
      const backlog = backlogPart(this.log.ofRunAfter(request.runId, attachment.lastEventId, LOG_VIEW_SKIPPED_TYPE));
      this.sendEntries(server, attachment, backlog.rows);
      if (backlog.cut) return this.closeForMore(server, client);
    } else {
      if (request.workflowEvent) this.send(server, { kind: "workflow", summary: this.summary(request.runId) });
      const after = attachment.lastEventId;
      // The next part resumes after the highest event id sent: an event logged later with a lower id comes in this one.
      const backlog = backlogPart(this.log.streamBacklog(request.runId, after, request.afterThinkingSeq), (part) => {
        const highest = part.reduce((id, row) => (row.type === "history" ? Math.max(id, row.historyEventId ?? 0) : id), after);
        return highest > after ? this.log.historyStraggler(request.runId, part.at(-1)!.seq, after, highest) : null;
      });
      this.sendRows(server, attachment, backlog.rows);
      if (backlog.cut) return this.closeForMore(server, client);
    }
    server.serializeAttachment(attachment);
    const done = this.doneFor(request.runId, attachment.view);
    if (done) this.sendDone(server, done);
    return client;
  }

  /**
   * Sends newly appended rows to the subscribers of their runs. Subscribers in the same state
   * (view, payloads, cursor: nearly all of them, live) share one serialized message list.
   */
  broadcast(rows: readonly LogRow[]): void {
    const byRun = new Map<string, LogRow[]>();
    for (const row of rows) {
      if (!row.runId) continue;
      byRun.set(row.runId, [...(byRun.get(row.runId) ?? []), row]);
    }
    for (const [runId, runRows] of byRun) {
      const streamed = runRows.filter((r) => r.type === "history" || r.type === "thinking");
      // Each view's `done`, serialized once for all its subscribers (null: none yet).
      const dones = new Map<SubscriptionView, string | null>();
      const doneOf = (view: SubscriptionView) => {
        if (!dones.has(view)) {
          const done = this.doneFor(runId, view);
          dones.set(view, done ? JSON.stringify(done) : null);
        }
        return dones.get(view)!;
      };
      const shared = new Map<string, { frames: string[]; lastEventId: number }>();
      for (const ws of this.ctx.getWebSockets(runId)) {
        const attachment = ws.deserializeAttachment() as SubscriberAttachment | null;
        if (!attachment) continue;
        const key = `${attachment.view}:${attachment.includePayloads}:${attachment.lastEventId}`;
        let out = shared.get(key);
        if (!out) {
          const messages = attachment.view === "log" ? entryMessages(attachment.lastEventId, runRows) : rowMessages(attachment, streamed);
          out = { frames: messages.messages.map((m) => JSON.stringify(m)), lastEventId: messages.lastEventId };
          shared.set(key, out);
        }
        for (const frame of out.frames) this.sendRaw(ws, frame);
        if (out.lastEventId !== attachment.lastEventId) {
          attachment.lastEventId = out.lastEventId;
          ws.serializeAttachment(attachment);
        }
        const done = doneOf(attachment.view);
        if (done) {
          this.sendRaw(ws, done);
          ws.close(STREAM_DONE_CLOSE_CODE, "done");
        }
      }
    }
  }

  private sendRows(ws: WebSocket, attachment: SubscriberAttachment, rows: readonly LogRow[]): void {
    const out = rowMessages(attachment, rows);
    for (const message of out.messages) this.send(ws, message);
    attachment.lastEventId = out.lastEventId;
  }

  private sendEntries(ws: WebSocket, attachment: SubscriberAttachment, rows: readonly LogRow[]): void {
    const out = entryMessages(attachment.lastEventId, rows);
    for (const message of out.messages) this.send(ws, message);
    attachment.lastEventId = out.lastEventId;
  }

  /**
   * The backlog goes on past what was sent: the subscription ends here (no attachment, so no live
   * row is sent to it) and the Worker subscribes again from its cursor for the next part.
   */
  private closeForMore(server: WebSocket, client: WebSocket): WebSocket {
    server.close(STREAM_MORE_CLOSE_CODE, "more");
    return client;
  }

  private sendDone(ws: WebSocket, done: SubscriberMessage): void {
    this.send(ws, done);
    ws.close(STREAM_DONE_CLOSE_CODE, "done");
  }

  private send(ws: WebSocket, message: SubscriberMessage): void {
    this.sendRaw(ws, JSON.stringify(message));
  }

  private sendRaw(ws: WebSocket, text: string): void {
    try {
      ws.send(text);
    } catch {
      // The subscriber is gone; webSocketClose cleans up.
    }
  }
}

/**
 * The first part of a backlog: rows in log order up to BACKLOG_PART_MAX_BYTES of stored JSON, ending
 * before the row that would take it past that (a first row larger than that is a part of its own).
 * `takeThrough` names a log seq the part must reach before it may end (null: none). `cut`: the
 * part ended before the backlog did.
 */
function backlogPart(
  rows: Iterator<SizedLogRow>,
  takeThrough?: (part: readonly LogRow[]) => number | null,
): { rows: LogRow[]; cut: boolean } {
  const part: LogRow[] = [];
  let bytes = 0;
  for (let next = rows.next(); !next.done; next = rows.next()) {
    const { row, bytes: size } = next.value;
    if (part.length > 0 && bytes + size > BACKLOG_PART_MAX_BYTES) {
      const through = takeThrough?.(part) ?? null;
      if (through === null || row.seq > through) {
        rows.return?.(undefined);
        return { rows: part, cut: true };
      }
    }
    part.push(row);
    bytes += size;
  }
  return { rows: part, cut: false };
}

/**
 * History view: runs of history events as `history` messages (only events after the subscriber's
 * last one, at most REPLAY_BATCH_SIZE a message, and with payloads at most about
 * REPLAY_BATCH_MAX_PAYLOAD_BYTES of them), thinking text as `thinking`, in log order.
 */
function rowMessages(
  attachment: { includePayloads: boolean; lastEventId: number },
  rows: readonly LogRow[],
): { messages: SubscriberMessage[]; lastEventId: number } {
  const messages: SubscriberMessage[] = [];
  let lastEventId = attachment.lastEventId;
  let batch: LogRowOf<"history">[] = [];
  let batchPayloadBytes = 0;
  const flush = () => {
    batchPayloadBytes = 0;
    if (batch.length > 0) {
      batch.sort((a, b) => a.historyEventId! - b.historyEventId!);
      lastEventId = batch[batch.length - 1]!.historyEventId!;
      messages.push({ kind: "history", events: batch.map((r) => withoutPayloads(r.data.event, attachment.includePayloads)), lastEventId });
    }
    batch = [];
  };
  for (const row of rows) {
    if (row.type === "history") {
      if (row.historyEventId! <= lastEventId || batch.some((b) => b.historyEventId === row.historyEventId)) continue;
      batch.push(row);
      if (attachment.includePayloads) batchPayloadBytes += JSON.stringify(row.data.event.payloads ?? null).length;
      if (batch.length >= REPLAY_BATCH_SIZE || batchPayloadBytes >= REPLAY_BATCH_MAX_PAYLOAD_BYTES) flush();
    } else if (row.type === "thinking") {
      flush();
      const { activityId, stepName, attempt, text } = row.data;
      messages.push({ kind: "thinking", seq: row.seq, activityId, stepName, attempt, text });
    }
  }
  flush();
  return { messages, lastEventId };
}

/** Log view: every entry after the subscriber's last one, as is (but LOG_VIEW_SKIPPED_TYPE's). */
function entryMessages(afterSeq: number, rows: readonly LogRow[]): { messages: SubscriberMessage[]; lastEventId: number } {
  const messages: SubscriberMessage[] = [];
  let lastEventId = afterSeq;
  for (const row of rows) {
    if (row.seq <= lastEventId) continue;
    lastEventId = row.seq;
    if (row.type !== LOG_VIEW_SKIPPED_TYPE) messages.push({ kind: "entry", entry: toEntry(row) });
  }
  return { messages, lastEventId };
}
