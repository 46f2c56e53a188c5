/**
 * GET /workflow/:id/history/stream and GET /workflow/:id/runs/:rid/history/stream
 *
 * Server-Sent Events over a run's Temporal history: `workflow` once on connect, `history` for
 * each batch of new events (SSE id = the batch's last Temporal event id), `thinking` for reasoning
 * text (SSE id = `<last Temporal event id sent>.<log seq>`), `done` when the run ends, `server_error` if something breaks after the stream opened. `Last-Event-ID` (or
 * `?lastEventId=`) replays only what the client has not seen; reconnecting to a finished run past
 * its last event answers 204, which tells EventSource to stop.
 *
 * The Worker holds the client's response; the run's RunStream DO holds one hibernatable
 * WebSocket per subscriber and sends structured messages down it, framed here (historyFramer).
 */
import type { Context } from "hono";
import { createMiddleware } from "hono/factory";
import { z } from "zod";
import { ADMISSION_PARAMS } from "../../../durable-objects/run-stream/subscriber-admission.ts";
import { READMITTED_PARAM } from "../../../durable-objects/run-stream/subscribe-upgrade.ts";
import type { SubscriberMessage } from "../../../durable-objects/run-stream.ts";
import type { App, AppEnv } from "../../app-env.ts";
import { ApiError } from "../../errors.ts";
import { zodIssues } from "../../middleware/json-body/index.ts";
import { type OwnedRunEnv, ownedRun } from "../../middleware/owned-run/index.ts";
import { singleValuedQuery } from "../../middleware/query/index.ts";
import { doneReason, toOutputEvent } from "../../shared/output-history.ts";
import { anyCaseUuid } from "../../shared/any-case-uuid.ts";
import { positiveNumberVar } from "../../shared/positive-number-var.ts";
import { NO_STORE, sseComment, sseFrame } from "../../sse/frames.ts";
import { parseHistoryCursor } from "../../sse/last-event-id.ts";
import { tokenRenewal } from "../../sse/token-renewal.ts";
import {
  openAdmittedSubscription,
  openRunSubscription,
  REVOKED_KEY_MESSAGE,
  StreamAtEnd,
  subscriptionResponse,
} from "../../sse/run-subscription.ts";
import { type PinnedRunEnv, parseWorkflowIdParam, pinnedRunParam } from "./params.ts";

/** Comment lines keep proxies and browsers from timing the stream out; Output sends one every 15 s. */
export const DEFAULT_KEEPALIVE_INTERVAL_MS = 15_000;
/** What EventSource should wait before reconnecting after a drop. */
const CLIENT_RETRY_MS = 2_000;

/**
 * The `history` frame of a DO message, by message and payload choice. Every subscriber of a run
 * gets the same parsed message object (src/sse/run-subscription.ts), so with 1,000 subscribers the
 * events are converted to Output's form and serialized once, not 1,000 times.
 */
const historyTexts = { withPayloads: new WeakMap<SubscriberMessage, string>(), withoutPayloads: new WeakMap<SubscriberMessage, string>() };

/**
 * Frames the run's RunStream messages as SSE. Events and `done` reasons are in Output's form
 * (src/shared/output-history.ts). Every frame a client can resume from carries an id: a `history`
 * frame the Temporal event id of its last event, a `thinking` frame `<that id>.<log seq>`, so
 * `Last-Event-ID` resumes exactly after it (docs/streaming.md).
 */
export function historyFramer(includePayloads: boolean, resumeAfterEventId: number) {
  let lastEventId = resumeAfterEventId;
  return (message: SubscriberMessage): { text: string; cursor?: number | string } => {
    switch (message.kind) {
      case "workflow":
        return { text: sseFrame({ event: "workflow", data: message.summary }) };
      case "history": {
        lastEventId = message.lastEventId;
        const cache = includePayloads ? historyTexts.withPayloads : historyTexts.withoutPayloads;
        let text = cache.get(message);
        if (text === undefined) {
          const events = message.events.map((event) => toOutputEvent(event, includePayloads));
          text = sseFrame({ event: "history", id: message.lastEventId, data: events });
          cache.set(message, text);
        }
        return { text, cursor: message.lastEventId };
      }
      case "thinking": {
        const { activityId, stepName, attempt, text, seq } = message;
        const id = `${lastEventId}.${seq}`;
        return { text: sseFrame({ event: "thinking", id, data: { activityId, stepName, attempt, text } }), cursor: id };
      }
      case "done": {
        const data: { reason: string; newRunId?: string } = { reason: doneReason(message.outcome.status) };
        if (message.outcome.newRunId) data.newRunId = message.outcome.newRunId;
        // An id of ours (Output's `done` has none), in a thinking frame's form: the log seq names the
        // run that ended, so an EventSource that reconnects after it goes on with the next run.
        const id = message.seq === undefined ? undefined : `${lastEventId}.${message.seq}`;
        return { text: sseFrame({ event: "done", ...(id === undefined ? {} : { id }), data }) };
      }
      default:
        return { text: "" };
    }
  };
}

/**
 * The stream's query (also its OpenAPI document). Other parameters are ignored, as in Output;
 * a repeated one is 400 (singleValuedQuery). `Last-Event-ID`, when sent, wins over `lastEventId`.
 */
export const historyStreamQuery = z.object({
  /** The run to stream, as Output's `?runId=` (any letter case); a pinned path's `:rid` wins over it, as in Output. */
  runId: anyCaseUuid.optional(),
  lastEventId: z.string().optional(),
  /** Exactly `true` or `false`, as Output checks it: `?includePayloads=1` is 400, not silently false. */
  includePayloads: z.enum(["true", "false"]).optional(),
  token: z.string().optional(),
});

type ResumeEnv = AppEnv & {
  Variables: { resumeFrom: ReturnType<typeof parseHistoryCursor>; includePayloads: boolean; queryRunId: string | undefined };
};

/** A token's scope (401), the query and the client's cursor (400), before the ownership read. */
const streamRequest = createMiddleware<ResumeEnv>(async (c, next) => {
  const workflowId = parseWorkflowIdParam(c.req.param("id")!);
  const { runScope } = c.get("auth");
  if (runScope && runScope !== workflowId) {
    throw new ApiError("unauthorized", "this stream token is for another run");
  }
  const query = historyStreamQuery.safeParse(singleValuedQuery(c));
  if (!query.success) throw new ApiError("invalid_request", "invalid history stream query", zodIssues(query.error));
  c.set("includePayloads", query.data.includePayloads === "true");
  c.set("queryRunId", query.data.runId);
  c.set("resumeFrom", parseHistoryCursor(c));
  await next();
});

async function streamHistory(c: Context<PinnedRunEnv & ResumeEnv & OwnedRunEnv>): Promise<Response> {
  // Ownership was read near the Worker (ownedRun), so an unknown or another organization's
  // workflow id is a 404 that never reaches, and never creates, a DO. The admission in the DO
  // checks the rest (started, at its end).
  const { workflowId } = c.get("ownedRun");
  const auth = c.get("auth");
  const requestedRunId = c.get("pinnedRunId") ?? c.get("queryRunId");
  const resumeFrom = c.get("resumeFrom");
  const lastEventId = resumeFrom?.eventId ?? null;
  const includePayloads = c.get("includePayloads");
  const keepAliveMs = positiveNumberVar(c.env.SSE_KEEPALIVE_MS, DEFAULT_KEEPALIVE_INTERVAL_MS);
  let admittedRunId: string | null = null;
  let frame = historyFramer(includePayloads, lastEventId ?? 0);
  let cursor = resumeFrom?.cursor ?? 0;
  // Opened with a stream token: fresh ones for the client's reconnects (an extra `token` event).
  const renewal = await tokenRenewal(c.env, auth);
  return subscriptionResponse(c, {
    // The `workflow` summary goes out once, on the first subscription only.
    // The first subscription is also the admission (run exists for this organization, has started,
    // 204 at the end): one call into the home region. Reconnects follow the admitted run.
    subscribe: async (after, first) => {
      const params = { after: String(after), includePayloads: String(includePayloads), workflowEvent: String(first) };
      // A reconnect or the next part of the backlog: the stream keeps the place on the run it had.
      if (!first) return openRunSubscription(c.env, workflowId, { ...params, runId: admittedRunId ?? "", [READMITTED_PARAM]: "1" });
      const admitted = await openAdmittedSubscription(c.env, workflowId, {
        ...params,
        [ADMISSION_PARAMS.organizationId]: auth.organizationId,
        ...(requestedRunId !== undefined ? { [ADMISSION_PARAMS.requestedRunId]: requestedRunId } : {}),
        ...(lastEventId !== null ? { [ADMISSION_PARAMS.lastEventId]: String(lastEventId) } : {}),
      });
      admittedRunId = admitted.runId;
      if (admitted.fromStart) {
        // The client has all of the run before this one (its cursor is of that run): this one from its start.
        frame = historyFramer(includePayloads, 0);
        cursor = 0;
      }
      return admitted.socket;
    },
    cursor,
    admittedCursor: () => cursor,
    // First bytes at once: reconnect delay and a comment, so clients and proxies see a live stream.
    preamble: sseFrame({ retry: CLIENT_RETRY_MS }) + renewal.first,
    keepAliveMs,
    keepAlive: renewal.keepAlive(() => sseComment("keepalive")),
    frame: (message) => frame(message),
    onLost: () =>
      sseFrame({
        event: "server_error",
        data: {
          error: "StreamInterruptedError",
          code: "stream_interrupted",
          message: "lost the run's event stream; reconnect to resume",
          workflowId,
          runId: admittedRunId,
        },
      }),
    onRevoked: () =>
      sseFrame({
        event: "server_error",
        data: {
          error: "UnauthorizedError",
          code: "unauthorized",
          message: REVOKED_KEY_MESSAGE,
          workflowId,
          runId: admittedRunId,
        },
      }),
  }).catch((err) => {
    if (err instanceof StreamAtEnd) return c.body(null, 204, NO_STORE);
    throw err;
  });
}

/** The history stream, unpinned and pinned to a run. */
export const HISTORY_STREAM_PATHS = ["/workflow/:id/history/stream", "/workflow/:id/runs/:rid/history/stream"] as const;

export function registerHistoryStream(app: App) {
  for (const path of HISTORY_STREAM_PATHS) {
    app.get(path, pinnedRunParam, streamRequest, ownedRun(), streamHistory);
  }
}
