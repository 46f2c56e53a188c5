/**
 * The Worker side of a streaming start: ONE call into the home region. The start command goes to
 * the run's DO as a WebSocket upgrade (durable-objects/run-stream/start-and-subscribe.ts); the DO
 * starts the run (the same RunStarter path as every start) and answers either with the
 * subscription to the run's log, or with what to tell the caller instead (an error, a start
 * accepted but not yet confirmed, an Idempotency-Key replay).
 */
import type { Run, StepRun } from "../db/schema.ts";
import type { StartCommand } from "../../durable-objects/run-stream/run-starter.ts";
import {
  START_AND_SUBSCRIBE_PATH,
  START_REPLY_HEADER,
  type StartAndSubscribeAnswer,
  type StartAndSubscribeRequest,
  type StartedSummary,
} from "../../durable-objects/run-stream/start-and-subscribe.ts";
import { runStream } from "../run-stream-client.ts";
import { replyError } from "../services/runs.ts";

export type StartSubscription =
  /** Started and confirmed: the DO's socket, already subscribed to the run's log from its first entry. */
  | { kind: "subscribed"; started: StartedSummary; socket: WebSocket }
  /** Accepted, not yet confirmed by Temporal (runId null); `run`/`steps` when asked for. */
  | { kind: "accepted"; started: StartedSummary; run?: Run | null; steps?: StepRun[] }
  /** An Idempotency-Key replay: `started` is the earlier run, in its own DO. */
  | { kind: "replayed"; started: StartedSummary };

/** Starts the run and subscribes to its log in one call; a refusal throws the same ApiError a plain start would. */
export async function startAndSubscribe(env: Env, command: StartCommand, options: { withRow?: boolean } = {}): Promise<StartSubscription> {
  const body: StartAndSubscribeRequest = { command, withRow: options.withRow ?? false };
  const url = `https://run-stream${START_AND_SUBSCRIBE_PATH}?${new URLSearchParams({ workflowId: command.workflowId })}`;
  const res = await runStream(env, command.workflowId).fetch(url, {
    method: "POST",
    headers: { upgrade: "websocket", "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  if (res.status === 101 && res.webSocket) {
    res.webSocket.accept();
    return { kind: "subscribed", started: JSON.parse(res.headers.get(START_REPLY_HEADER)!) as StartedSummary, socket: res.webSocket };
  }
  if (res.status !== 200) throw new Error(`run stream refused the start (${res.status}): ${await res.text()}`);
  const reply = (await res.json()) as StartAndSubscribeAnswer;
  if (!reply.ok) throw replyError(reply.error);
  // The command's idempotency object is the request's own (c.get("idempotency")): the middleware adds the header.
  if (reply.replayed && command.idempotency) command.idempotency.replayed = true;
  const { prompt, ...rest } = reply.started;
  const started: StartedSummary = { ...rest, ...(prompt ? { prompt: { webSearch: prompt.webSearch } } : {}) };
  if (reply.replayed) return { kind: "replayed", started };
  return { kind: "accepted", started, run: reply.run, steps: reply.steps };
}
