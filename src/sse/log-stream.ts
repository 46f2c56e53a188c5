/**
 * An SSE response over a run's event log (the RunStream's `log` view), for the API families that
 * shape their own events. The caller maps each log entry to SSE frames and says what to send
 * when the run is done; this module holds the connection: keep-alives, re-attaching to the DO
 * from the last entry sent if it goes away, and closing when the client leaves.
 */
import type { Context } from "hono";
import type { AppEnv } from "../app-env.ts";
import { STREAM_DONE_CLOSE_CODE, type LogEntry, type SubscriberMessage } from "../../durable-objects/run-stream.ts";
import { ApiError } from "../errors.ts";
import { runStream } from "../run-stream-client.ts";
import { SSE_HEADERS, sseComment } from "./frames.ts";
import { closeQuietly, sseWriter } from "./writer.ts";

const DO_RECONNECT_ATTEMPTS = 3;
const DO_RECONNECT_DELAY_MS = 250;

export interface LogStreamOptions {
  workflowId: string;
  runId: string;
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
  onDone: (done: NonNullable<SubscriberMessage["done"]>) => Promise<string>;
  /** Sent when the DO cannot be reached again; the client should reconnect with Last-Event-ID. */
  onLost: () => string;
}

async function subscribe(env: Env, workflowId: string, runId: string, after: number): Promise<WebSocket> {
  const params = new URLSearchParams({ view: "log", runId, workflowId, after: String(after) });
  const res = await runStream(env, workflowId).fetch(`https://run-stream/subscribe?${params}`, { headers: { upgrade: "websocket" } });
  if (res.status !== 101 || !res.webSocket) throw new Error(`run stream refused the subscription (${res.status})`);
  res.webSocket.accept();
  return res.webSocket;
}

export async function logStreamResponse(c: Context<AppEnv>, options: LogStreamOptions, status = 200): Promise<Response> {
  // Opened before the response so that a failure is still a JSON error, not a broken stream.
  let socket = await subscribe(c.env, options.workflowId, options.runId, options.afterSeq).catch((err: Error) => {
    throw new ApiError("host_unavailable", `the run's stream is not available: ${err.message}`, undefined, { "retry-after": "1" });
  });
  let lastSeq = options.afterSeq;
  let keepAlive: ReturnType<typeof setInterval> | undefined;
  // Frames are written in order even though onDone is async.
  let queue: Promise<void> = Promise.resolve();
  const out = sseWriter(() => {
    if (keepAlive !== undefined) clearInterval(keepAlive);
    closeQuietly(socket);
  });
  const { write, close } = out;
  const enqueue = (work: () => Promise<void> | void) => {
    queue = queue.then(work).catch((err) => {
      console.error(JSON.stringify({ level: "error", message: "log stream frame failed", error: String(err) }));
      write(options.onLost());
      close();
    });
  };

  const attach = (ws: WebSocket) => {
    ws.addEventListener("message", (event) => {
      const message = JSON.parse(event.data as string) as SubscriberMessage;
      if (message.entry) {
        const entry = message.entry;
        lastSeq = entry.seq;
        enqueue(async () => write(await options.onEntry(entry)));
      }
      if (message.done) {
        const done = message.done;
        enqueue(async () => {
          write(await options.onDone(done));
          close();
        });
      }
    });
    ws.addEventListener("close", (event) => {
      if (out.closed || event.code === STREAM_DONE_CLOSE_CODE) return;
      void reattach();
    });
  };

  const reattach = async () => {
    for (let attempt = 1; attempt <= DO_RECONNECT_ATTEMPTS && !out.closed; attempt++) {
      await new Promise((r) => setTimeout(r, DO_RECONNECT_DELAY_MS * attempt));
      try {
        socket = await subscribe(c.env, options.workflowId, options.runId, lastSeq);
        attach(socket);
        return;
      } catch {
        /* try again */
      }
    }
    enqueue(() => {
      write(options.onLost());
      close();
    });
  };

  write((options.preamble ?? "") + sseComment("connected"));
  keepAlive = setInterval(() => write(options.keepAlive()), options.keepAliveMs);
  attach(socket);
  c.req.raw.signal.addEventListener("abort", close);
  return new Response(out.readable, { status, headers: SSE_HEADERS });
}

