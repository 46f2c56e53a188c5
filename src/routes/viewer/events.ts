/**
 * GET /runs/:workflowId/events?token=
 *
 * The Server-Sent Events the run viewer page follows: a view over the run's event log (the
 * RunStream's `log` view), one SSE event per log entry the page shows, each with the entry's log
 * sequence number as its SSE id, so `Last-Event-ID` (or `?lastEventId=`) resumes exactly after
 * the last event the client saw: nothing twice, nothing lost.
 *
 * | event          | data                                                                      |
 * |----------------|---------------------------------------------------------------------------|
 * | `run`          | `{state: "started"|"finished", runId, status, output?, error?, at}`     |
 * | `step`         | `{activityId, stepName, attempt, state: started|completed|failed, at, error?}` |
 * | `thinking`     | `{activityId, stepName, attempt, text, at}`                               |
 * | `attribute`    | `{activityId, stepName, attempt, attribute, at}`                          |
 * | `done`         | `{status, output, error, newRunId}`, last (no id); alone for a run that    |
 * |                | ended before it started (its start refused for good), with id `0.end`     |
 * | `server_error` | `{error, message}`: the run's stream was lost; reconnect to resume (no id) |
 *
 * Auth: the run-scoped stream token (`?token=`), for exactly this workflowId.
 */
import { createMiddleware } from "hono/factory";
import { ADMISSION_PARAMS } from "../../../durable-objects/run-stream/subscriber-admission.ts";
import type { LogEntry } from "../../../durable-objects/run-stream.ts";
import type { App, AppEnv } from "../../app-env.ts";
import { ApiError } from "../../errors.ts";
import { singleQueryValue } from "../../middleware/query/index.ts";
import { rateLimit } from "../../middleware/rate-limit/index.ts";
import { positiveNumberVar } from "../../shared/positive-number-var.ts";
import { NO_STORE, SSE_HEADERS, sseComment, sseFrame } from "../../sse/frames.ts";
import { logEndId, parseLogCursor } from "../../sse/last-event-id.ts";
import { type LogDone, logStreamResponse } from "../../sse/log-stream.ts";
import { openAdmittedSubscription, REVOKED_KEY_MESSAGE, RunNeverStarted, StreamAtEnd } from "../../sse/run-subscription.ts";
import { STREAM_TOKEN_REFUSED, streamTokenAuthContext, verifyLiveStreamToken } from "../../stream-tokens.ts";
import { DEFAULT_KEEPALIVE_INTERVAL_MS } from "../workflow/history-stream.ts";
import { tokenRenewal } from "../../sse/token-renewal.ts";

/** What EventSource waits before reconnecting after a drop. */
export const VIEWER_RETRY_MS = 1_000;
/** Log entry types the viewer shows; `history` and `text` (answer deltas) are left out. */
const SHOWN_TYPES: ReadonlySet<LogEntry["type"]> = new Set(["run.started", "run.finished", "step", "thinking", "attribute"]);

/**
 * The token's run, or 401: missing, forged, expired, or minted for another run. Sets the request's
 * auth, so that rateLimit() counts it against the run (streamTokenRateLimitKey).
 */
const viewerTokenAuth = createMiddleware<AppEnv>(async (c, next) => {
  const workflowId = c.req.param("workflowId") ?? "";
  const token = singleQueryValue(c, "token");
  if (!token)
    throw new ApiError(
      "unauthorized",
      "this stream needs ?token= (the streamToken of POST /workflow/start, or POST /workflow/:id/stream-token)",
    );
  const claims = await verifyLiveStreamToken(c.env.DB, c.env.STREAM_TOKEN_SECRET, token);
  if (!claims) throw new ApiError("unauthorized", STREAM_TOKEN_REFUSED);
  if (claims.workflowId !== workflowId) throw new ApiError("unauthorized", "this stream token is for another run");
  c.set("auth", streamTokenAuthContext(claims));
  await next();
});

/** The SSE frame of one log entry ("" for entries the viewer does not show). */
export function viewerFrame(entry: LogEntry): string {
  const step = (d: { activityId?: string; stepName?: string; attempt?: number }) => ({
    activityId: d.activityId ?? null,
    stepName: d.stepName ?? null,
    attempt: d.attempt || 1,
    at: entry.at,
  });
  switch (entry.type) {
    case "run.started":
      return sseFrame({
        id: entry.seq,
        event: "run",
        data: { state: "started", runId: entry.data.runId, status: "running", at: entry.at },
      });
    case "run.finished": {
      const d = entry.data;
      return sseFrame({
        id: entry.seq,
        event: "run",
        data: {
          state: "finished",
          runId: d.runId,
          status: d.status,
          output: d.output ?? null,
          error: d.error ?? null,
          newRunId: d.newRunId ?? null,
          at: entry.at,
        },
      });
    }
    case "step": {
      const d = entry.data;
      const state = d.state === "completed" || d.state === "failed" ? d.state : "started";
      return sseFrame({ id: entry.seq, event: "step", data: { ...step(d), state, ...(d.error ? { error: d.error } : {}) } });
    }
    case "thinking":
      return sseFrame({ id: entry.seq, event: "thinking", data: { ...step(entry.data), text: entry.data.text } });
    case "attribute":
      return sseFrame({ id: entry.seq, event: "attribute", data: { ...step(entry.data), attribute: entry.data.attribute ?? null } });
    default:
      return "";
  }
}

export function registerViewerEvents(app: App) {
  app.get("/runs/:workflowId/events", viewerTokenAuth, rateLimit(), async (c) => {
    const workflowId = c.req.param("workflowId");
    const { organizationId } = c.get("auth");
    // `<seq>`, or `0.end`: the id of the `done` of a run that never started (below).
    const cursor = parseLogCursor(c);
    const afterSeq = cursor?.afterSeq ?? 0;
    const keepAliveMs = positiveNumberVar(c.env.SSE_KEEPALIVE_MS, DEFAULT_KEEPALIVE_INTERVAL_MS);
    // One call into the home region (docs/start-path.md): the first subscription carries the
    // admission, which the run's DO decides against D1's primary: the row is the token's
    // organization's (404), the run has started (503), and a client that saw everything of a
    // finished run gets 204, which makes EventSource stop instead of reconnecting for ever to a
    // stream that has nothing more to say. A run that ended before it started (its start refused
    // for good) has no log: the page gets its end alone (`done`, with the reason), not a 204 that
    // would leave it with no run and no reason. The stream follows the row's current run; a page
    // resuming inside an earlier run (continued as new, or replaced by a reset, since) gets the
    // rest of that run and its end.
    const admit = async () => {
      const admitted = await openAdmittedSubscription(c.env, workflowId, {
        view: "log",
        after: String(afterSeq),
        [ADMISSION_PARAMS.organizationId]: organizationId,
        [ADMISSION_PARAMS.endTypes]: [...SHOWN_TYPES].join(","),
        [ADMISSION_PARAMS.cursorRun]: "1",
        [ADMISSION_PARAMS.endedBeforeStart]: "1",
      });
      return { socket: admitted.socket, runId: admitted.runId ?? "" };
    };
    // A run longer than a token's life: the page gets fresh ones, for its reconnects.
    const renewal = await tokenRenewal(c.env, c.get("auth"));
    const preamble = sseFrame({ retry: VIEWER_RETRY_MS }) + renewal.first;
    return logStreamResponse(c, {
      workflowId,
      runId: null,
      afterSeq,
      openFirst: admit,
      keepAliveMs,
      keepAlive: renewal.keepAlive(() => sseComment("keep-alive")),
      preamble,
      onEntry: (entry) => viewerFrame(entry),
      onDone: async (done) => sseFrame({ event: "done", data: done }),
      onLost: () =>
        sseFrame({
          event: "server_error",
          data: { error: "stream_interrupted", message: "lost the run's event stream; reconnecting resumes it" },
        }),
      onRevoked: () => sseFrame({ event: "server_error", data: { error: "unauthorized", message: REVOKED_KEY_MESSAGE } }),
    }).catch((err) => {
      if (err instanceof StreamAtEnd) return c.body(null, 204, NO_STORE);
      if (err instanceof RunNeverStarted) {
        // The client has this run's end (its only frame): 204, so EventSource stops. Without an id
        // on that frame, an EventSource the page did not close got it again every VIEWER_RETRY_MS.
        if (cursor?.sawEnd) return c.body(null, 204, NO_STORE);
        const done: LogDone = { status: err.ended.status, output: null, error: err.ended.error, newRunId: null };
        return c.body(preamble + sseFrame({ event: "done", id: logEndId(0), data: done }), 200, SSE_HEADERS);
      }
      throw err;
    });
  });
}
