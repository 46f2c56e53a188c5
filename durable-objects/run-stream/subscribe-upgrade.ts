/**
 * The DO's `fetch`: the WebSocket upgrades the Worker opens to hold a subscriber's SSE response
 * (fanout.ts). Nothing else is served over fetch: everything else is an RPC method.
 *
 * - `GET /subscribe?runId=&after=&includePayloads=&workflowEvent=&view=`: a subscription to a
 *   run's log. A stream's first one carries the caller's organization and is admitted here
 *   (subscriber-admission.ts: 404/503/204 next to D1); a reconnect names its run. The subscriber
 *   gets the backlog after `after`, then live events, then `done`.
 * - `GET /start-and-subscribe`: a streaming start, the run's start and then its log subscription,
 *   in one call (start-and-subscribe.ts).
 *
 * A subscription to a run that already has RUN_STREAM_MAX_SUBSCRIBERS open streams is 429
 * `too_many_subscribers`, before anything is read, unless it goes on with a stream already
 * admitted (READMITTED_PARAM: the next part of its backlog, or after the DO went away), whose place
 * it had. Anything else is a 404.
 */
import { positiveNumberVar } from "../../src/shared/positive-number-var.ts";
import { DEFAULT_MAX_SUBSCRIBERS_PER_RUN, FULL_RUN_RETRY_AFTER_SECONDS, META_KEYS } from "./constants.ts";
import type { EventLog } from "./event-log.ts";
import { type Subscribers, parseSubscribeRequest } from "./fanout.ts";
import type { LogReader } from "./log-reader.ts";
import type { RunStarter } from "./run-starter.ts";
import { START_AND_SUBSCRIBE_PATH, startAndSubscribe } from "./start-and-subscribe.ts";
import type { Meta } from "./meta.ts";
import type { ResetMark } from "./reset-mark.ts";
import { ADMITTED_FROM_START_HEADER, ADMITTED_RUN_HEADER, admitSubscriber } from "./subscriber-admission.ts";

/** The path of a log subscription (src/sse/run-subscription.ts opens it). */
export const SUBSCRIBE_PATH = "/subscribe";
/**
 * `readmitted=1`: the subscription goes on with a stream the run already took (set by the Worker
 * only, never from a client's request), so the run's subscriber limit does not refuse it halfway.
 */
export const READMITTED_PARAM = "readmitted";

/** The parts a subscription goes through. */
export interface SubscribeUpgradeParts {
  log: Pick<EventLog, "hasEntryAfter" | "latestRunId" | "knowsRun" | "runOfSeq" | "successorOf">;
  meta: Pick<Meta, "set">;
  subscribers: Pick<Subscribers, "accept">;
  logReader: Pick<LogReader, "streamState">;
  resetMark: Pick<ResetMark, "pendingFor">;
}

export interface SubscribeUpgradeDeps {
  env: Env;
  starter: RunStarter;
  /** Open subscriber sockets of this DO (all runs of the workflow id). */
  subscriberCount(): number;
  /**
   * The DO's parts, over storage that has its schema: called only once a request gets past the
   * checks that need none, so a refused upgrade leaves a new DO as it found it (storage.ts).
   */
  parts(): SubscribeUpgradeParts;
}

export async function routeUpgrade(deps: SubscribeUpgradeDeps, request: Request): Promise<Response> {
  const url = new URL(request.url);
  if (request.headers.get("upgrade") !== "websocket") return new Response("not found", { status: 404 });
  if (url.pathname === START_AND_SUBSCRIBE_PATH) {
    // A streaming start: the start and the subscription in one call (run-stream/start-and-subscribe.ts).
    const workflowId = url.searchParams.get("workflowId") ?? "";
    return startAndSubscribe(
      {
        env: deps.env,
        starter: deps.starter,
        accept: (id, subscription) => {
          deps.parts().meta.set(META_KEYS.workflowId, id);
          return deps.parts().subscribers.accept(subscription);
        },
      },
      request,
      workflowId,
    );
  }
  if (url.pathname !== SUBSCRIBE_PATH) return new Response("not found", { status: 404 });
  const max = positiveNumberVar(deps.env.RUN_STREAM_MAX_SUBSCRIBERS, DEFAULT_MAX_SUBSCRIBERS_PER_RUN);
  if (url.searchParams.get(READMITTED_PARAM) !== "1" && deps.subscriberCount() >= max) {
    return Response.json(
      {
        error: {
          code: "too_many_subscribers",
          message: `this run has ${max} open streams, the most it takes; close one or try again later`,
        },
      },
      { status: 429, headers: { "retry-after": String(FULL_RUN_RETRY_AFTER_SECONDS) } },
    );
  }
  const admission = await admitSubscriber(deps.env, url.searchParams.get("workflowId") ?? "", url, {
    streamState: async (id) => deps.parts().logReader.streamState(id),
    hasEntryAfter: (seq, runId, types) => deps.parts().log.hasEntryAfter(seq, runId, types),
    knowsRun: (runId) => deps.parts().log.knowsRun(runId),
    runOfSeq: (seq) => deps.parts().log.runOfSeq(seq),
    successorOf: (runId) => deps.parts().log.successorOf(runId),
    pendingReset: (runId) => deps.parts().resetMark.pendingFor(runId),
  });
  if (admission && "refusal" in admission) return admission.refusal;
  // The client's cursor is of the run before: this one starts from its beginning.
  if (admission?.fromStart) url.searchParams.set("after", "0");
  const runId =
    admission?.runId || url.searchParams.get("runId") || deps.parts().log.latestRunId() || url.searchParams.get("fallbackRunId");
  if (!runId) return new Response("run has no events yet and no run id was given", { status: 409 });
  const workflowId = url.searchParams.get("workflowId");
  if (workflowId) deps.parts().meta.set(META_KEYS.workflowId, workflowId);
  const client = deps.parts().subscribers.accept(parseSubscribeRequest(url, runId));
  const headers: Record<string, string> = { [ADMITTED_RUN_HEADER]: runId };
  if (admission?.fromStart) headers[ADMITTED_FROM_START_HEADER] = "1";
  return new Response(null, { status: 101, webSocket: client, headers });
}
