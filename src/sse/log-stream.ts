/**
 * An SSE response over a run's event log (the RunStream's `log` view), for the API families that
 * shape their own events: the caller maps each log entry to SSE frames and says what to send
 * when the run is done. The connection itself is held by run-subscription.ts.
 */
import type { Context } from "hono";
import type { AppEnv } from "../app-env.ts";
import type { LogEntry, RunOutcome } from "../../durable-objects/run-stream.ts";
import { READMITTED_PARAM } from "../../durable-objects/run-stream/subscribe-upgrade.ts";
import { openRunSubscription, subscriptionResponse } from "./run-subscription.ts";

export interface LogStreamOptions {
  workflowId: string;
  /** The run the stream follows; null when `openFirst` names it (an admission decides it). */
  runId: string | null;
  /** Log seq the client has already seen (Last-Event-ID), 0 for everything. */
  afterSeq: number;
  /** Keep-alive interval; each API family has its own (comment or `ping` event). */
  keepAliveMs: number;
  keepAlive: () => string;
  /** Frames to send first (e.g. `retry:`), before any entry. */
  preamble?: string;
  /** SSE text for one entry ("" to skip it). */
  onEntry: (entry: LogEntry) => string | Promise<string>;
  /** SSE text once the run is over, after its last entry. */
  onDone: (done: LogDone) => Promise<string>;
  /** Sent when the DO cannot be reached again; the client should reconnect with Last-Event-ID. */
  onLost: () => string;
  /** Sent before the stream ends when the API key that opened it is revoked (run-subscription.ts). */
  onRevoked: () => string;
  /**
   * The first subscription, when the route opens it its own way (already opened by a streaming
   * start, or with an admission): one call into the home region. Reconnects subscribe plainly.
   */
  openFirst?: () => Promise<{ socket: WebSocket; runId: string }>;
  /**
   * The stream follows the workflow, not one run: a run that continues as new, or that a reset
   * replaces, goes on in the stream with the next run's entries, and `onDone` is for the
   * workflow's end. Else the hand-over is the stream's end, as any other.
   */
  followWorkflow?: boolean;
  /** This request started the run (a streaming start): see SubscriptionStreamOptions. */
  startedByThisRequest?: boolean;
}

/** How the run ended, every field present (null when it does not apply). */
export interface LogDone {
  status: RunOutcome["status"];
  output: unknown;
  error: string | null;
  newRunId: string | null;
}

const logDone = (o: RunOutcome): LogDone => ({
  status: o.status,
  output: o.output ?? null,
  error: o.error ?? null,
  newRunId: o.newRunId ?? null,
});

/** The `log` view of the run's RunStream; SSE ids are log sequence numbers. */
export function logStreamResponse(c: Context<AppEnv>, options: LogStreamOptions): Promise<Response> {
  let runId = options.runId;
  return subscriptionResponse(c, {
    subscribe: async (after, first) => {
      if (first && options.openFirst) {
        const opened = await options.openFirst();
        runId = opened.runId;
        return opened.socket;
      }
      return openRunSubscription(c.env, options.workflowId, {
        view: "log",
        runId: runId ?? "",
        after: String(after),
        // A reconnect or the next part of the backlog: the stream keeps the place on the run it had.
        ...(first ? {} : { [READMITTED_PARAM]: "1" }),
      });
    },
    cursor: options.afterSeq,
    preamble: options.preamble,
    startedByThisRequest: options.startedByThisRequest,
    keepAliveMs: options.keepAliveMs,
    keepAlive: options.keepAlive,
    frame: (message) => {
      if (message.kind === "entry") return { text: options.onEntry(message.entry), cursor: message.entry.seq };
      if (message.kind === "done") {
        const done = logDone(message.outcome);
        // The run a continue-as-new or a reset handed over to (the DO names a reset's).
        const next = done.status === "continued_as_new" ? done.newRunId : (message.resetRunId ?? null);
        if (options.followWorkflow && next) {
          // The next run's entries, all of them (none was sent yet): its own subscription from the start.
          runId = next;
          return { text: "", cursor: 0, follow: true };
        }
        return { text: options.onDone(done) };
      }
      return { text: "" };
    },
    onLost: options.onLost,
    onRevoked: options.onRevoked,
  });
}
