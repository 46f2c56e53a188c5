/**
 * An SSE response fed by a subscription to a run's RunStream DO (a hibernatable WebSocket the
 * Worker holds while the client listens). This module holds the connection for every stream
 * route: first bytes at once, keep-alives, frames written in order, and, when the DO goes away
 * (reset, deploy), a new subscription from the last cursor sent, so the client notices nothing.
 * Only if that fails does the client get the route's "lost" frame (and reconnects itself).
 */
import type { Context } from "hono";
import type { AppEnv } from "../app-env.ts";
import { STREAM_DONE_CLOSE_CODE, STREAM_MORE_CLOSE_CODE, type SubscriberMessage } from "../../durable-objects/run-stream.ts";
import { ApiError, ERROR_CODES, type ErrorCode } from "../errors.ts";
import { liveApiKey } from "../middleware/api-key-auth/index.ts";
import {
  ADMITTED_FROM_START_HEADER,
  ADMITTED_RUN_HEADER,
  NEVER_STARTED_STATUS,
  type RunEndedBeforeStart,
} from "../../durable-objects/run-stream/subscriber-admission.ts";
import { SUBSCRIBE_PATH } from "../../durable-objects/run-stream/subscribe-upgrade.ts";
import { runStream } from "../run-stream-client.ts";
import { SSE_HEADERS, sseComment } from "./frames.ts";
import { takeStreamLease } from "./stream-lease.ts";
import { closeQuietly, MAX_UNSENT_BYTES, sseWriter } from "./writer.ts";

/** What a stream says as it ends because the API key that opened it no longer works (`onRevoked`). */
export const REVOKED_KEY_MESSAGE = "the API key this stream was opened with has been revoked; the stream ends";

/** Attempts to subscribe again after the DO went away, before giving up. */
const DO_RECONNECT_ATTEMPTS = 3;
const DO_RECONNECT_DELAY_MS = 250;
/**
 * A long backlog comes from the DO in parts (BACKLOG_PART_MAX_BYTES); the next part is asked for
 * once the client has left at most this much of the stream unread, so a client reading a long
 * history with its payloads is never past MAX_UNSENT_BYTES, and neither the DO nor the Worker
 * holds the whole backlog.
 */
const NEXT_BACKLOG_PART_UNSENT_BYTES = MAX_UNSENT_BYTES / 4;

/** Opens a subscription (`GET /subscribe` on the DO, upgraded to a WebSocket). A fresh stub each time: one to a DO that was reset keeps failing. */
export async function openRunSubscription(env: Env, workflowId: string, params: Record<string, string>): Promise<WebSocket> {
  return (await openAdmittedSubscription(env, workflowId, params)).socket;
}

/** The DO says the client already has everything of a finished run: answer 204. */
export class StreamAtEnd extends Error {}

/** The DO says the run ended before it started, and how (asked for with `admitEndedBeforeStart`). */
export class RunNeverStarted extends Error {
  constructor(readonly ended: RunEndedBeforeStart) {
    super("the run ended before it started");
  }
}

/**
 * Opens a subscription; with admission parameters (durable-objects/run-stream/subscriber-admission.ts)
 * the DO also checks the run and answers 404/503/204 itself, so a connect is one call into the
 * home region. Resolves to the socket, the run it follows, and whether it follows that run from its
 * start whatever the cursor said (the cursor was of the run before it).
 */
export async function openAdmittedSubscription(
  env: Env,
  workflowId: string,
  params: Record<string, string>,
): Promise<{ socket: WebSocket; runId: string | null; fromStart: boolean }> {
  const res = await runStream(env, workflowId).fetch(
    `https://run-stream${SUBSCRIBE_PATH}?${new URLSearchParams({ ...params, workflowId })}`,
    {
      headers: { upgrade: "websocket" },
    },
  );
  if (res.status === 204) throw new StreamAtEnd("stream complete");
  if (res.status === NEVER_STARTED_STATUS) throw new RunNeverStarted((await res.json()) as RunEndedBeforeStart);
  if (res.status !== 101 || !res.webSocket) {
    const body = (await res.json().catch(() => null)) as { error?: { code?: string; message?: string } } | null;
    const code = body?.error?.code;
    if (code && code in ERROR_CODES) {
      const retryAfter = code === "host_unavailable" ? "1" : res.headers.get("retry-after");
      throw new ApiError(
        code as ErrorCode,
        body!.error!.message ?? code,
        undefined,
        retryAfter ? { "retry-after": retryAfter } : undefined,
      );
    }
    throw new Error(`run stream refused the subscription (${res.status})`);
  }
  res.webSocket.accept();
  return {
    socket: res.webSocket,
    runId: res.headers.get(ADMITTED_RUN_HEADER),
    fromStart: res.headers.get(ADMITTED_FROM_START_HEADER) === "1",
  };
}

export interface SubscriptionStreamOptions {
  /** Opens a subscription resuming after `cursor`; `first` is true only for the initial one. */
  subscribe: (cursor: number | string, first: boolean) => Promise<WebSocket>;
  /** The client's cursor (Last-Event-ID; the history stream's may be `<eventId>.<seq>`), 0 for everything. */
  cursor: number | string;
  /**
   * The cursor the stream goes on from, asked once the first subscription is open: `cursor`, unless
   * that subscription's admission moved it (the history stream's, to the start of the next run).
   */
  admittedCursor?: () => number | string;
  /** Frames to send before anything else (e.g. `retry:`). */
  preamble?: string;
  /**
   * This request started the run it streams (a streaming start): the stream counts among its key's
   * open streams but is never refused for them, as the run is already started (stream-lease.ts).
   */
  startedByThisRequest?: boolean;
  keepAliveMs: number;
  keepAlive: () => string;
  /**
   * The SSE text for one DO message ("" for none) and the cursor it advances to, if any. The
   * message is shared by the run's subscribers: read it, never change it. `follow`: the run
   * handed over to another (a continue-as-new), so when the DO ends this subscription the stream
   * subscribes again (`subscribe` knows to which run) instead of ending.
   */
  frame: (message: SubscriberMessage) => { text: string | Promise<string>; cursor?: number | string; follow?: boolean };
  /** Sent when the DO cannot be reached again. */
  onLost: () => string;
  /**
   * Sent, before the stream ends, when the API key it was opened with (or that minted its stream
   * token) no longer works: revoked or deleted. A reconnect is then refused with 401.
   */
  onRevoked: () => string;
}

/**
 * The last DO message parsed in this isolate. A run's subscribers all get the same message text
 * from the DO, one after another, so they share one parsed object (frame functions only read it,
 * and may cache their output by it: see the history stream's framer).
 */
let lastParsed: { raw: string; message: SubscriberMessage } | undefined;

function parsed(raw: string): SubscriberMessage {
  if (lastParsed?.raw !== raw) lastParsed = { raw, message: JSON.parse(raw) as SubscriberMessage };
  return lastParsed.message;
}

export async function subscriptionResponse<E extends AppEnv>(c: Context<E>, options: SubscriptionStreamOptions): Promise<Response> {
  // The key's place for the stream first (its RateLimiter, near the key's use, not the home region):
  // a full key is 429 before anything is opened (stream-lease.ts says why not alongside).
  const lease = await takeStreamLease(c, { capped: !options.startedByThisRequest });
  // Opened before the response so that a failure is still a JSON error, not a broken stream.
  let socket: WebSocket;
  try {
    socket = await options.subscribe(options.cursor, true);
  } catch (err) {
    lease?.release();
    if (err instanceof ApiError || err instanceof StreamAtEnd || err instanceof RunNeverStarted) throw err;
    throw new ApiError("host_unavailable", `the run's stream is not available: ${(err as Error).message}`, undefined, {
      "retry-after": "1",
    });
  }
  // Hono answers HEAD with its GET route and drops the body, which nobody would ever read or
  // cancel: the subscription (one of the run's places) and the keep-alives would stay for good.
  // HEAD gets what GET would (the admission above: 404, 204, 429 ...), and nothing is kept open.
  if (c.req.method === "HEAD") {
    closeQuietly(socket);
    lease?.release();
    return new Response(null, { status: 200, headers: SSE_HEADERS });
  }
  let cursor = options.admittedCursor?.() ?? options.cursor;
  let keepAlive: ReturnType<typeof setInterval> | undefined;
  const out = sseWriter(() => {
    if (keepAlive !== undefined) clearInterval(keepAlive);
    closeQuietly(socket);
    lease?.release();
  });
  // Frames may take async work (a lookup); the queue keeps them in the DO's order. While nothing is
  // queued, a frame that is ready is written at once (the common case: with 1,000 subscribers on a
  // run, this spares a promise chain per subscriber per message).
  let queue: Promise<void> = Promise.resolve();
  let queued = 0;
  const enqueue = (work: () => Promise<void> | void) => {
    queued++;
    queue = queue
      .then(work)
      .catch((err) => {
        console.error(JSON.stringify({ level: "error", message: "stream frame failed", error: String(err) }));
        out.write(options.onLost());
        out.close();
      })
      .finally(() => {
        queued--;
      });
  };

  /** The run this subscription follows handed over to the next one: subscribe to that when the DO closes this one. */
  let following = false;
  const attach = (ws: WebSocket) => {
    ws.addEventListener("message", (event) => {
      const { text, cursor: next, follow } = options.frame(parsed(event.data as string));
      if (next !== undefined) cursor = next;
      if (follow) following = true;
      if (typeof text === "string" && queued === 0) out.write(text);
      else enqueue(async () => out.write(await text));
    });
    ws.addEventListener("close", (event) => {
      if (out.closed) return;
      // The DO closes with this code after the run's last frame: the stream is complete, unless it follows the next run.
      if (event.code === STREAM_DONE_CLOSE_CODE && !following) enqueue(out.close);
      else if (event.code === STREAM_MORE_CLOSE_CODE) {
        // A part of a long backlog: the rest from the cursor, once this part's frames are written and mostly read.
        enqueue(async () => {
          await out.drained(NEXT_BACKLOG_PART_UNSENT_BYTES);
          void reattach(true);
        });
      } else {
        const handOver = following;
        following = false;
        void reattach(handOver);
      }
    });
  };

  /**
   * A new subscription from the cursor: after the DO went away (after a pause), or at once to
   * follow a hand-over or for the next part of the backlog.
   */
  const reattach = async (immediately = false) => {
    for (let attempt = 1; attempt <= DO_RECONNECT_ATTEMPTS && !out.closed; attempt++) {
      if (!immediately || attempt > 1) await new Promise((r) => setTimeout(r, DO_RECONNECT_DELAY_MS * attempt));
      if (out.closed) return;
      try {
        socket = await options.subscribe(cursor, false);
        // The client may have left while this subscribed: the new subscription must not outlive it.
        if (out.closed) return closeQuietly(socket);
        attach(socket);
        return;
      } catch {
        /* try again */
      }
    }
    enqueue(() => {
      out.write(options.onLost());
      out.close();
    });
  };

  // A stream lives as long as its run, past any revocation of the key that opened it: each
  // keep-alive also asks whether the key still works (the key cache's answer, so about one D1
  // read per key and isolate every API_KEY_CACHE_TTL_MS), and a revoked key's stream ends.
  const auth = c.get("auth");
  const keyId = auth?.apiKeyId ?? auth?.streamToken?.apiKeyId ?? null;
  let checkingKey = false;
  const checkKey = async () => {
    if (keyId === null || checkingKey) return;
    checkingKey = true;
    try {
      if ((await liveApiKey(c.env.DB, keyId)) === null && !out.closed)
        enqueue(() => {
          out.write(options.onRevoked());
          out.close();
        });
    } catch {
      /* D1 did not answer: the next keep-alive asks again */
    } finally {
      checkingKey = false;
    }
  };

  out.write((options.preamble ?? "") + sseComment("connected"));
  keepAlive = setInterval(() => {
    out.write(options.keepAlive());
    void checkKey();
  }, options.keepAliveMs);
  attach(socket);
  c.req.raw.signal.addEventListener("abort", out.close);
  // The client may have left while the stream was being opened (no abort event comes after the fact).
  if (c.req.raw.signal.aborted) out.close();
  return new Response(out.readable, { status: 200, headers: SSE_HEADERS });
}
