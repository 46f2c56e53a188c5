/**
 * The Worker side of a streaming start: ONE call into the home region. The start command goes to
 * the run's DO as a WebSocket upgrade (durable-objects/run-stream/start-and-subscribe.ts); the DO
 * starts the run (the same RunStarter path as every start) and answers either with the
 * subscription to the run's log, or with what to tell the caller instead (an error, a start
 * accepted but not yet confirmed, an Idempotency-Key replay). A command too big for request
 * headers (a large input) takes two calls instead: the start, then the subscription.
 */
import type { Run, StepRun } from "../db/schema.ts";
import type { StartCommand, StartedRunInfo } from "../../durable-objects/run-stream/run-starter.ts";
import {
  decodeHeaderJson,
  START_AND_SUBSCRIBE_PATH,
  START_REPLY_HEADER,
  startCommandHeaders,
  subscribes,
  type StartAndSubscribeAnswer,
  type StartAndSubscribeRequest,
  type StartedSummary,
} from "../../durable-objects/run-stream/start-and-subscribe.ts";
import { openRunSubscription } from "./run-subscription.ts";
import { runStream } from "../run-stream-client.ts";
import { readRun, replyError, startAfterLostCall } from "../services/runs.ts";

export type StartSubscription =
  /** Started and confirmed: the DO's socket, already subscribed to the run's log from its first entry. */
  | { kind: "subscribed"; started: StartedSummary; socket: WebSocket }
  /** Accepted, not yet confirmed by Temporal (runId null); `run`/`steps` when asked for. */
  | { kind: "accepted"; started: StartedSummary; run?: Run | null; steps?: StepRun[] }
  /** An Idempotency-Key replay: `started` is the earlier run, in its own DO. */
  | { kind: "replayed"; started: StartedSummary };

/**
 * Starts the run and subscribes to its log in one call; a refusal throws the same ApiError a plain
 * start would. A call lost on the way (services/runs.ts, startAfterLostCall) whose run was accepted
 * all the same is answered as accepted, not confirmed.
 */
export async function startAndSubscribe(env: Env, command: StartCommand, options: { withRow?: boolean } = {}): Promise<StartSubscription> {
  try {
    return await startAndSubscribeOnce(env, command, options);
  } catch (err) {
    const started = await startAfterLostCall(env, command, err);
    const run = options.withRow ? (await readRun(env, command.organizationId, command.workflowId, { settle: false })).run : undefined;
    return { kind: "accepted", started: summaryOf(started), ...(run ? { run } : {}) };
  }
}

async function startAndSubscribeOnce(env: Env, command: StartCommand, options: { withRow?: boolean }): Promise<StartSubscription> {
  const body: StartAndSubscribeRequest = { command, withRow: options.withRow ?? false };
  const commandHeaders = startCommandHeaders(body);
  if (!commandHeaders) return startThenSubscribe(env, command, options.withRow ?? false);
  const url = `https://run-stream${START_AND_SUBSCRIBE_PATH}?${new URLSearchParams({ workflowId: command.workflowId })}`;
  const res = await runStream(env, command.workflowId).fetch(url, { headers: { upgrade: "websocket", ...commandHeaders } });
  if (res.status === 101 && res.webSocket) {
    res.webSocket.accept();
    return { kind: "subscribed", started: decodeHeaderJson(res.headers.get(START_REPLY_HEADER)!) as StartedSummary, socket: res.webSocket };
  }
  if (res.status !== 200) throw new Error(`run stream refused the start (${res.status}): ${await res.text()}`);
  return notSubscribed(command, (await res.json()) as StartAndSubscribeAnswer);
}

/** A command too big for the headers: the start (RPC), then the subscription. Two calls. */
async function startThenSubscribe(env: Env, command: StartCommand, withRow: boolean): Promise<StartSubscription> {
  const answer = (await runStream(env, command.workflowId).startForStream(command, withRow)) as StartAndSubscribeAnswer;
  if (!subscribes(answer)) return notSubscribed(command, answer);
  const socket = await openRunSubscription(env, command.workflowId, { view: "log", runId: answer.started.runId, after: "0" });
  return { kind: "subscribed", started: summaryOf(answer.started), socket };
}

function notSubscribed(command: StartCommand, answer: StartAndSubscribeAnswer): StartSubscription {
  if (!answer.ok) throw replyError(answer.error);
  // The command's idempotency object is the request's own (c.get("idempotency")): the middleware adds the header.
  if (answer.replayed && command.idempotency) command.idempotency.replayed = true;
  const started = summaryOf(answer.started);
  if (answer.replayed) return { kind: "replayed", started };
  return { kind: "accepted", started, run: answer.run, steps: answer.steps };
}

function summaryOf({ prompt, ...rest }: StartedRunInfo): StartedSummary {
  return { ...rest, ...(prompt ? { prompt: { webSearch: prompt.webSearch } } : {}) };
}
