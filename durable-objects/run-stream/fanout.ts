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
import { REPLAY_BATCH_SIZE, STREAM_DONE_CLOSE_CODE } from "./constants.ts";
import { toEntry, type EventLog, type LogRow, type LogRowOf } from "./event-log.ts";
import type { RunOutcome, SubscriberMessage, SubscriptionView, WorkflowSummary } from "./messages.ts";

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
  /** history view: send the `workflow` summary first. */
  workflowEvent: boolean;
}

export function parseSubscribeRequest(url: URL, runId: string): SubscribeRequest {
  return {
    runId,
    view: url.searchParams.get("view") === "log" ? "log" : "history",
    includePayloads: url.searchParams.get("includePayloads") === "true",
    after: Math.max(0, Number(url.searchParams.get("after") ?? 0) || 0),
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
  ) {}

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
      this.sendEntries(server, attachment, this.log.ofRunAfter(request.runId, attachment.lastEventId));
    } else {
      if (request.workflowEvent) this.send(server, { kind: "workflow", summary: this.summary(request.runId) });
      this.sendRows(server, attachment, this.log.streamBacklog(request.runId, attachment.lastEventId));
    }
    server.serializeAttachment(attachment);
    const finished = this.log.isComplete(request.runId) ? this.log.finished(request.runId) : null;
    if (finished) this.sendDone(server, finished);
    return client;
  }

  /** Sends newly appended rows to the subscribers of their runs. */
  broadcast(rows: readonly LogRow[]): void {
    const byRun = new Map<string, LogRow[]>();
    for (const row of rows) {
      if (!row.runId) continue;
      byRun.set(row.runId, [...(byRun.get(row.runId) ?? []), row]);
    }
    for (const [runId, runRows] of byRun) {
      const streamed = runRows.filter((r) => r.type === "history" || r.type === "thinking");
      const finished = this.log.isComplete(runId) ? this.log.finished(runId) : null;
      for (const ws of this.ctx.getWebSockets(runId)) {
        const attachment = ws.deserializeAttachment() as SubscriberAttachment | null;
        if (!attachment) continue;
        const before = attachment.lastEventId;
        if (attachment.view === "log") this.sendEntries(ws, attachment, runRows);
        else this.sendRows(ws, attachment, streamed);
        if (attachment.lastEventId !== before) ws.serializeAttachment(attachment);
        if (finished) this.sendDone(ws, finished);
      }
    }
  }

  /**
   * History view: runs of history events as `history` messages (only events after the
   * subscriber's last one, at most REPLAY_BATCH_SIZE a message), thinking text as `thinking`.
   */
  private sendRows(ws: WebSocket, attachment: SubscriberAttachment, rows: readonly LogRow[]): void {
    let batch: LogRowOf<"history">[] = [];
    const flush = () => {
      if (batch.length > 0) this.sendHistory(ws, attachment, batch.sort((a, b) => a.historyEventId! - b.historyEventId!));
      batch = [];
    };
    for (const row of rows) {
      if (row.type === "history") {
        if (row.historyEventId! <= attachment.lastEventId || batch.some((b) => b.historyEventId === row.historyEventId)) continue;
        batch.push(row);
        if (batch.length >= REPLAY_BATCH_SIZE) flush();
      } else if (row.type === "thinking") {
        flush();
        const { activityId, stepName, attempt, text } = row.data;
        this.send(ws, { kind: "thinking", seq: row.seq, activityId, stepName, attempt, text });
      }
    }
    flush();
  }

  private sendHistory(ws: WebSocket, attachment: SubscriberAttachment, rows: LogRowOf<"history">[]): void {
    const lastEventId = rows[rows.length - 1]!.historyEventId!;
    attachment.lastEventId = lastEventId;
    this.send(ws, { kind: "history", events: rows.map((r) => withoutPayloads(r.data.event, attachment.includePayloads)), lastEventId });
  }

  /** Log view: every entry after the subscriber's last one, as is. */
  private sendEntries(ws: WebSocket, attachment: SubscriberAttachment, rows: readonly LogRow[]): void {
    for (const row of rows) {
      if (row.seq <= attachment.lastEventId) continue;
      attachment.lastEventId = row.seq;
      this.send(ws, { kind: "entry", entry: toEntry(row) });
    }
  }

  private sendDone(ws: WebSocket, outcome: RunOutcome): void {
    this.send(ws, { kind: "done", outcome });
    ws.close(STREAM_DONE_CLOSE_CODE, "done");
  }

  private send(ws: WebSocket, message: SubscriberMessage): void {
    try {
      ws.send(JSON.stringify(message));
    } catch {
      // The subscriber is gone; webSocketClose cleans up.
    }
  }
}
