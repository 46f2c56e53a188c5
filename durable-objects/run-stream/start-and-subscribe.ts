/**
 * Start-and-subscribe: the streaming starts' one call into the home region.
 *
 * `GET /start-and-subscribe` with `Upgrade: websocket`, from the Worker only. Its headers carry
 * the start command (validated here); the DO starts the run on the same RunStarter path as every
 * other start (same Idempotency-Key claim, acceptance, outbox and undo), and once the host has
 * confirmed it accepts the subscriber on the run's `log` view in the same call, so the backlog
 * begins with `run.started`. The Worker frames SSE from the messages as for any subscription.
 *
 * Answers:
 * - 101 with the subscriber's WebSocket; the header START_REPLY_HEADER says which run it follows.
 * - 200 with a JSON `StartAndSubscribeAnswer` otherwise: a refusal (the error the Worker turns into
 *   today's 4xx), a start accepted but not yet confirmed by Temporal (the Worker answers 202; the
 *   run row and its step rows come along when asked, read here next to D1), or an Idempotency-Key
 *   replay (the run lives in its own DO; the Worker follows it there, a second call).
 * - 400 for headers that are not a start command (a bug in the Worker, never a caller's input).
 */
import { z } from "zod";
import type { Run, StepRun } from "../../src/db/schema.ts";
import { findRunByWorkflowId } from "../../src/db/runs.ts";
import { listStepRuns } from "../../src/db/workflow-runs.ts";
import type { SubscribeRequest } from "./fanout.ts";
import type { RunStarter, SerializedError, StartCommand, StartedRunInfo } from "./run-starter.ts";

export const START_AND_SUBSCRIBE_PATH = "/start-and-subscribe";
/** Header of the 101 answer: the started run (`StartedSummary`, JSON, base64url). */
export const START_REPLY_HEADER = "x-start-reply";
/**
 * The start command travels in request headers (`x-start-command-0`, `-1`, ...; JSON, base64url):
 * workerd turns a WebSocket upgrade into a GET and drops its body. Each header stays under the
 * per-header limit and all of them well under the total one (docs: 16 KB per header, 128 KB in
 * all); a bigger command (a large input) takes the two-call path (`startForStream`, then subscribe).
 */
export const START_COMMAND_HEADER_PREFIX = "x-start-command-";
export const START_COMMAND_CHUNK_CHARS = 12 * 1024;
export const START_COMMAND_MAX_CHUNKS = 6;

/** Base64url of the UTF-8 JSON of `value`. */
export function encodeHeaderJson(value: unknown): string {
  const bytes = new TextEncoder().encode(JSON.stringify(value));
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** The value `encodeHeaderJson` encoded; throws on anything else. */
export function decodeHeaderJson(text: string): unknown {
  const binary = atob(text.replace(/-/g, "+").replace(/_/g, "/"));
  return JSON.parse(new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(Uint8Array.from(binary, (ch) => ch.charCodeAt(0))));
}

/** The command's headers, or null when it is too big for them. */
export function startCommandHeaders(body: StartAndSubscribeRequest): Record<string, string> | null {
  const encoded = encodeHeaderJson(body);
  if (encoded.length > START_COMMAND_CHUNK_CHARS * START_COMMAND_MAX_CHUNKS) return null;
  const headers: Record<string, string> = {};
  for (let i = 0; i * START_COMMAND_CHUNK_CHARS < encoded.length; i++) {
    headers[`${START_COMMAND_HEADER_PREFIX}${i}`] = encoded.slice(i * START_COMMAND_CHUNK_CHARS, (i + 1) * START_COMMAND_CHUNK_CHARS);
  }
  return headers;
}

function readCommandHeaders(headers: Headers): unknown {
  let encoded = "";
  for (let i = 0; i < START_COMMAND_MAX_CHUNKS; i++) {
    const chunk = headers.get(`${START_COMMAND_HEADER_PREFIX}${i}`);
    if (chunk === null) break;
    encoded += chunk;
  }
  try {
    return decodeHeaderJson(encoded);
  } catch {
    return null;
  }
}

const startTarget = z.discriminatedUnion("kind", [
  z.object({
    kind: z.literal("code"),
    by: z.union([z.object({ name: z.string().min(1) }), z.object({ id: z.string().min(1) })]),
    input: z.unknown(),
    envs: z.record(z.string(), z.string()).optional(),
  }),
  z.object({ kind: z.literal("prompt"), promptWorkflowId: z.string().min(1), body: z.unknown() }),
]);

/** What the Worker sends: the start command, and what the non-101 answers should carry. */
export const startAndSubscribeRequest = z.object({
  command: z.object({
    organizationId: z.string().min(1),
    workflowId: z.string().min(1),
    runUuid: z.uuid(),
    target: startTarget,
    idempotency: z.object({ key: z.string().min(1), fingerprint: z.string(), replayed: z.boolean() }).optional(),
  }),
  /** Include the run row and its step rows when the answer is not a subscription (the Workflow Runs API's 202). */
  withRow: z.boolean().default(false),
});
export type StartAndSubscribeRequest = z.input<typeof startAndSubscribeRequest>;

/** The started run as the 101 header carries it: the prompt is cut to what the stream's last frame needs. */
export type StartedSummary = Omit<StartedRunInfo, "prompt"> & { prompt?: { webSearch: boolean } };

export type StartAndSubscribeAnswer =
  | { ok: false; error: SerializedError }
  | { ok: true; started: StartedRunInfo; replayed?: boolean; run?: Run | null; steps?: StepRun[] };

export interface StartAndSubscribeDeps {
  env: Env;
  starter: RunStarter;
  /** Accepts a subscriber (fanout.ts) for this DO's workflow, and notes the workflow id. */
  accept(workflowId: string, request: SubscribeRequest): WebSocket;
}

/**
 * The start of a streaming route: the answer to send back as is, or (ok, not replayed, a run id)
 * the run to subscribe to. Also the two-call path's RPC (RunStream.startForStream).
 */
export async function startForStream(
  deps: Pick<StartAndSubscribeDeps, "env" | "starter">,
  command: StartCommand,
  withRow: boolean,
): Promise<StartAndSubscribeAnswer> {
  const reply = await deps.starter.start(command);
  if (!reply.ok) return { ok: false, error: reply.error };
  const { started } = reply;
  const out: StartAndSubscribeAnswer = { ok: true, started, ...(reply.replayed ? { replayed: true } : {}) };
  if (withRow && !reply.replayed && started.runId === null) {
    // Accepted, not yet confirmed: the row as it is (step rows too, should the host have reported any already).
    const run = await findRunByWorkflowId(deps.env.DB, command.organizationId, started.workflowId);
    Object.assign(out, { run, steps: run ? await listStepRuns(deps.env.DB, run.id) : [] });
  }
  return out;
}

/** A subscription is owed: started here, confirmed by Temporal, not a replay of another run. */
export const subscribes = (answer: StartAndSubscribeAnswer): answer is StartAndSubscribeAnswer & { ok: true; started: { runId: string } } =>
  answer.ok && !answer.replayed && answer.started.runId !== null;

/** The log subscription a streaming start opens: from the run's first entry. */
export const startSubscription = (runId: string): SubscribeRequest => ({
  runId,
  view: "log",
  includePayloads: false,
  after: 0,
  workflowEvent: false,
});

export async function startAndSubscribe(deps: StartAndSubscribeDeps, request: Request, ownWorkflowId: string): Promise<Response> {
  const parsed = startAndSubscribeRequest.safeParse(readCommandHeaders(request.headers));
  if (!parsed.success) return new Response(`not a start command: ${parsed.error.message}`, { status: 400 });
  const { command, withRow } = parsed.data;
  // The Worker addresses this DO by the workflow id it minted: a command for another one is a bug.
  if (command.workflowId !== ownWorkflowId) return new Response("start command for another workflow id", { status: 400 });
  const answer = await startForStream(deps, command as StartCommand, withRow);
  if (!subscribes(answer)) return Response.json(answer);
  const { started } = answer;
  const socket = deps.accept(started.workflowId, startSubscription(started.runId));
  const summary: StartedSummary = {
    workflowId: started.workflowId,
    runId: started.runId,
    status: started.status,
    id: started.id,
    ...(started.prompt ? { prompt: { webSearch: started.prompt.webSearch } } : {}),
  };
  return new Response(null, { status: 101, webSocket: socket, headers: { [START_REPLY_HEADER]: encodeHeaderJson(summary) } });
}
