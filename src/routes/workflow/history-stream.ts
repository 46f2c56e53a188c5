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
 * WebSocket per subscriber and sends ready-made SSE frames down it.
 */
import type { Context } from "hono";
import type { App, AppEnv } from "../../app-env.ts";
import { ApiError } from "../../errors.ts";
import { runStream } from "../../run-stream-client.ts";
import { getRunOrThrow } from "../../services/runs.ts";
import { sseComment, sseFrame } from "../../sse/frames.ts";
import { parseHistoryCursor } from "../../sse/last-event-id.ts";
import { openRunSubscription, subscriptionResponse } from "../../sse/run-subscription.ts";
import { parseWorkflowIdParam } from "./params.ts";

/** Comment lines keep proxies and browsers from timing the stream out (at most every 25 s). */
export const DEFAULT_KEEPALIVE_INTERVAL_MS = 20_000;
/** What EventSource should wait before reconnecting after a drop. */
const CLIENT_RETRY_MS = 2_000;

const RUN_ID_PATTERN = /^[A-Za-z0-9-]{1,64}$/;

async function streamHistory(c: Context<AppEnv>, requestedRunId: string | undefined): Promise<Response> {
  const workflowId = parseWorkflowIdParam(c.req.param("id")!);
  const auth = c.get("auth");
  if (auth.runScope && auth.runScope !== workflowId) {
    throw new ApiError("unauthorized", "this stream token is for another run");
  }
  if (requestedRunId !== undefined && !RUN_ID_PATTERN.test(requestedRunId)) {
    throw new ApiError("run_not_found", "no run with that runId");
  }
  const run = await getRunOrThrow(c.env, auth.organizationId, workflowId);
  const resumeFrom = parseHistoryCursor(c);
  const lastEventId = resumeFrom?.eventId ?? null;
  const includePayloads = c.req.query("includePayloads") === "true";

  const stub = runStream(c.env, workflowId);
  const state = await stub.streamState(requestedRunId);
  if (requestedRunId !== undefined && state.lastEventId === 0 && !state.finished && requestedRunId !== run.temporalRunId) {
    throw new ApiError("run_not_found", `workflow ${workflowId} has no run ${requestedRunId}`);
  }
  const runId = requestedRunId ?? state.runId ?? run.temporalRunId;
  if (!runId) throw new ApiError("host_unavailable", "the run has not started yet; retry shortly", undefined, { "retry-after": "1" });
  if (state.finished && lastEventId !== null && lastEventId >= state.lastEventId) {
    return c.body(null, 204);
  }

  const keepAliveMs = Number(c.env.SSE_KEEPALIVE_MS) > 0 ? Number(c.env.SSE_KEEPALIVE_MS) : DEFAULT_KEEPALIVE_INTERVAL_MS;
  return subscriptionResponse(c, {
    // The `workflow` summary goes out once, on the first subscription only.
    subscribe: (after, first) =>
      openRunSubscription(c.env, workflowId, { runId, after: String(after), includePayloads: String(includePayloads), workflowEvent: String(first) }),
    cursor: resumeFrom?.cursor ?? 0,
    // First bytes at once: reconnect delay and a comment, so clients and proxies see a live stream.
    preamble: sseFrame({ retry: CLIENT_RETRY_MS }),
    keepAliveMs,
    keepAlive: () => sseComment("keep-alive"),
    frame: (message) => ({ text: message.sse ?? "", cursor: message.cursor ?? message.eventId }),
    onLost: () => sseFrame({ event: "server_error", data: { error: "stream_interrupted", message: "lost the run's event stream; reconnect to resume" } }),
  });
}

export function registerHistoryStream(app: App) {
  app.get("/workflow/:id/history/stream", (c) => streamHistory(c, undefined));
  app.get("/workflow/:id/runs/:rid/history/stream", (c) => streamHistory(c, c.req.param("rid")));
}
