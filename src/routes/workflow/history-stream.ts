/**
 * GET /workflow/:id/history/stream and GET /workflow/:id/runs/:rid/history/stream
 *
 * Server-Sent Events over a run's Temporal history: `workflow` once on connect, `history` for
 * each batch of new events (SSE id = the batch's last Temporal event id), `done` when the run
 * ends, `server_error` if something breaks after the stream opened. `Last-Event-ID` (or
 * `?lastEventId=`) replays only what the client has not seen; reconnecting to a finished run past
 * its last event answers 204, which tells EventSource to stop.
 *
 * The Worker holds the client's response; the run's RunStream DO holds one hibernatable
 * WebSocket per subscriber and sends ready-made SSE frames down it.
 */
import type { Context } from "hono";
import type { App, AppEnv } from "../../app-env.ts";
import { STREAM_DONE_CLOSE_CODE, type SubscriberMessage } from "../../../durable-objects/run-stream.ts";
import { ApiError } from "../../errors.ts";
import { runStream } from "../../run-stream-client.ts";
import { getRunOrThrow } from "../../services/runs.ts";
import { SSE_HEADERS, sseComment, sseFrame } from "../../sse/frames.ts";
import { closeQuietly, sseWriter } from "../../sse/writer.ts";
import { parseWorkflowIdParam } from "./params.ts";

/** Comment lines keep proxies and browsers from timing the stream out (at most every 25 s). */
export const DEFAULT_KEEPALIVE_INTERVAL_MS = 20_000;
/** What EventSource should wait before reconnecting after a drop. */
const CLIENT_RETRY_MS = 2_000;
/** Attempts to re-attach to the DO (e.g. after it was reset) before giving up with server_error. */
const DO_RECONNECT_ATTEMPTS = 3;
const DO_RECONNECT_DELAY_MS = 250;

const RUN_ID_PATTERN = /^[A-Za-z0-9-]{1,64}$/;

function parseLastEventId(c: Context<AppEnv>): number | null {
  const raw = c.req.header("last-event-id") ?? c.req.query("lastEventId");
  if (raw === undefined || raw === "") return null;
  if (!/^\d{1,15}$/.test(raw)) {
    throw new ApiError("invalid_request", "Last-Event-ID must be a Temporal event id (a non-negative integer)", [
      { path: "lastEventId", message: "expected a non-negative integer" },
    ]);
  }
  return Number(raw);
}

async function openSubscription(stub: ReturnType<typeof runStream>, params: Record<string, string>): Promise<WebSocket> {
  const res = await stub.fetch(`https://run-stream/subscribe?${new URLSearchParams(params)}`, { headers: { upgrade: "websocket" } });
  if (res.status !== 101 || !res.webSocket) throw new Error(`run stream refused the subscription (${res.status})`);
  res.webSocket.accept();
  return res.webSocket;
}

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
  const lastEventId = parseLastEventId(c);
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

  // A fresh stub each time: a stub to a DO that was reset keeps failing.
  const subscribe = (after: number, workflowEvent: boolean) =>
    openSubscription(runStream(c.env, workflowId), {
      runId,
      workflowId,
      after: String(after),
      includePayloads: String(includePayloads),
      workflowEvent: String(workflowEvent),
    });
  // Opened before the response so that a failure is still a JSON error, not a broken stream.
  let socket = await subscribe(lastEventId ?? 0, true).catch((err: Error) => {
    throw new ApiError("host_unavailable", `the run's stream is not available: ${err.message}`, undefined, { "retry-after": "1" });
  });

  let lastSent = lastEventId ?? 0;
  let keepAlive: ReturnType<typeof setInterval> | undefined;
  const out = sseWriter(() => {
    if (keepAlive !== undefined) clearInterval(keepAlive);
    closeQuietly(socket);
  });
  const { write, close } = out;

  const attach = (ws: WebSocket) => {
    ws.addEventListener("message", (event) => {
      const message = JSON.parse(event.data as string) as SubscriberMessage;
      if (message.sse) write(message.sse);
      if (message.eventId !== undefined) lastSent = message.eventId;
    });
    ws.addEventListener("close", (event) => {
      if (out.closed) return;
      if (event.code === STREAM_DONE_CLOSE_CODE) close();
      else void reattach();
    });
  };

  // The DO went away (reset, deploy): attach again from the last event sent, so the client
  // notices nothing. Only if that fails does it see server_error (and EventSource reconnects).
  const reattach = async () => {
    for (let attempt = 1; attempt <= DO_RECONNECT_ATTEMPTS && !out.closed; attempt++) {
      await new Promise((r) => setTimeout(r, DO_RECONNECT_DELAY_MS * attempt));
      try {
        socket = await subscribe(lastSent, false);
        attach(socket);
        return;
      } catch {
        /* try again */
      }
    }
    write(sseFrame({ event: "server_error", data: { error: "stream_interrupted", message: "lost the run's event stream; reconnect to resume" } }));
    close();
  };

  // First bytes at once: reconnect delay and a comment, so clients and proxies see a live stream.
  write(sseFrame({ retry: CLIENT_RETRY_MS }) + sseComment("connected"));
  const keepAliveMs = Number(c.env.SSE_KEEPALIVE_MS) > 0 ? Number(c.env.SSE_KEEPALIVE_MS) : DEFAULT_KEEPALIVE_INTERVAL_MS;
  keepAlive = setInterval(() => write(sseComment("keep-alive")), keepAliveMs);
  attach(socket);
  c.req.raw.signal.addEventListener("abort", close);

  return new Response(out.readable, { status: 200, headers: SSE_HEADERS });
}

export function registerHistoryStream(app: App) {
  app.get("/workflow/:id/history/stream", (c) => streamHistory(c, undefined));
  app.get("/workflow/:id/runs/:rid/history/stream", (c) => streamHistory(c, c.req.param("rid")));
}
