/**
 * The host's control API: the edge's only way to Temporal. Every route but /health requires a
 * request signed with the shared secret (see src/shared/signing.ts).
 */
import { type Context, Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import {
  QueryNotRegisteredError,
  QueryRejectedError,
  WorkflowExecutionAlreadyStartedError,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
  WorkflowUpdateRPCTimeoutOrCancelledError,
  type Client,
} from "@temporalio/client";
import { BodyTooLargeError, readSignedBody } from "../src/shared/capped-body.ts";
import { INTERNAL_MAX_JSON_DEPTH, jsonDepth } from "../src/middleware/json-body/index.ts";
import {
  cancelRequest,
  HOST_PATHS,
  interactRequest,
  RUN_ID_PATTERN,
  resetRequest,
  startRunRequest,
  type StartRunRequest,
  terminateRequest,
} from "../src/shared/host-api.ts";
import { TERMINAL_STATUSES } from "../src/shared/run-status.ts";
import { runStartedEvent } from "../src/shared/run-events.ts";
import { NonceMemory, verifyRequest } from "../src/shared/signing.ts";
import { hasHandler, isStartable, type HandlerKind } from "./catalog.ts";
import type { EdgeClient } from "./edge-client.ts";
import type { HistoryRelay } from "./history-relay.ts";
import type { RunEnvs } from "./run-envs.ts";
import {
  completedRunResult,
  describeRun,
  failureMessage,
  runResult,
  signalRun,
  TEMPORAL_CALL_WAIT_MS,
  TemporalDeadlineError,
  withinDeadline,
} from "./temporal.ts";
import { GRPC, grpcCodeOf, grpcMessageOf, isTemporalOutage } from "./temporal-errors.ts";
import { RunNotFoundError, StepNotCompletedError, StepNotFoundError, resetToAfterStep } from "./reset.ts";

/** Memo key of the run UUID a start carries (StartRunRequest.acceptId). */
export const ACCEPT_ID_MEMO_KEY = "outriderAcceptId";

/**
 * The first run id of the workflow's current execution if it was started with `acceptId`; null
 * when the workflow id holds no execution or another one (a caller reusing an id, say).
 */
async function acceptedExecution(client: Client, workflowId: string, acceptId: string): Promise<string | null> {
  try {
    const d = await client.workflow.getHandle(workflowId).describe();
    if (d.memo?.[ACCEPT_ID_MEMO_KEY] !== acceptId) return null;
    // A continued-as-new run is still the same start; its chain begins at the first execution.
    return (d.raw.workflowExecutionInfo?.firstRunId as string | undefined) || d.runId;
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return null;
    throw err;
  }
}

/** What Temporal says when a payload passes its blob size limit (`limit.blobSize.error`). */
const BLOB_SIZE_REFUSAL = /size exceeds limit/i;

/**
 * Deepest nesting of arrays and objects a request body may have. The edge refuses callers' bodies
 * nested past MAX_JSON_DEPTH and wraps them in a level or two (a start's `input`, a message's
 * `payload`), so the room its own signed pushes get is plenty; past it, a body is refused before
 * it is parsed, never handed on to recursive code (Temporal's payload converter) that would
 * overflow the stack.
 */
export const MAX_BODY_JSON_DEPTH = INTERNAL_MAX_JSON_DEPTH;

/** The most of an unknown route's method and path the 404 quotes. */
const MAX_QUOTED_METHOD = 16;
const MAX_QUOTED_PATH = 200;

/** Longest a single result call may block; the edge asks again if it wants to wait longer. */
export const MAX_RESULT_WAIT_MS = 120_000;

/** A result call's `waitMs`: a whole number of milliseconds (the edge sends nothing else). */
const WAIT_MS_PATTERN = /^\d+$/;

/** Where the host's limit on one request's Temporal calls lives (host/temporal.ts), also read by the history relay. */
export { TEMPORAL_CALL_WAIT_MS };

/**
 * How long a start may take (the look-up of an earlier attempt's run included). Under the edge's
 * START_ATTEMPT_TIMEOUT_MS (5 s, durable-objects/run-stream/constants.ts), so that the edge's outbox
 * gets this answer: 504 start_outcome_unknown (Temporal may have started it), which it retries with
 * the same accept id, and the retry answers with the run if there is one.
 */
export const START_WAIT_MS = 4_000;

/**
 * How long a reset may take: the run's history is read to find the step, then Temporal resets it.
 * Under the edge's RESET_HOST_TIMEOUT_MS (20 s, durable-objects/run-stream/reset-mark.ts), so that
 * the edge gets the host's 504 reset_outcome_unknown (it may have been reset) before its own limit.
 */
export const RESET_WAIT_MS = 15_000;

/** How long the readiness check waits for Temporal. */
export const READY_TIMEOUT_MS = 3_000;

/**
 * How long an update may take, from sending it to its handler's result. Temporal's client would
 * wait for ever: for an update to a run whose workflow tasks keep failing (a deploy that broke
 * its replay), or whose workers are all gone, the caller would hang until the run ends.
 */
export const UPDATE_WAIT_MS = 60_000;

/**
 * How long a query may wait for a worker to answer it. Temporal gives up after 30 s with
 * DEADLINE_EXCEEDED ("query timed out before a worker could process it") when no worker polls the
 * run's task queue or its workflow tasks keep failing: that is the caller's 504, not our 500.
 */
export const QUERY_WAIT_MS = 20_000;

export interface ControlApiDeps {
  client: Client;
  taskQueue: string;
  sharedSecrets: string[];
  relay: HistoryRelay;
  edge: EdgeClient;
  envs?: RunEnvs;
  /** A run's limit when its start names none (host/config.ts, TEMPORAL_WORKFLOW_EXECUTION_TIMEOUT). */
  defaultExecutionTimeoutMs: number;
  /**
   * Accepted nonces of signed requests, so a replay is refused: kept across restarts by the host
   * (signed-request-nonces.ts); in this process's memory when absent (tests).
   */
  nonces?: Pick<NonceMemory, "claim">;
  /** UPDATE_WAIT_MS, unless a test waits less. */
  updateWaitMs?: number;
  /** QUERY_WAIT_MS, unless a test waits less. */
  queryWaitMs?: number;
  /** TEMPORAL_CALL_WAIT_MS, unless a test waits less. */
  callWaitMs?: number;
  /** START_WAIT_MS, unless a test waits less. */
  startWaitMs?: number;
  /** RESET_WAIT_MS, unless a test waits less. */
  resetWaitMs?: number;
}

function hostError(status: 400 | 401 | 404 | 409 | 413 | 422 | 503 | 504, code: string, message: string): HTTPException {
  return new HTTPException(status, {
    res: Response.json({ error: { code, message } }, { status }),
  });
}

/**
 * The verified nonce of the signed request being served. Each host process remembers the nonces
 * it accepted, but not those its siblings did (docs/deploy.md runs several behind one balancer):
 * a captured request could be played again through another host within its signature's window.
 * So the calls that would do something twice (a reset, an update, a signal) name the nonce to Temporal,
 * which every host shares and which takes a request id it has seen as the same request.
 */
type ControlApiEnv = { Variables: { signedNonce: string } };

/** Temporal's duplicate check for the signed request with this nonce (a reset's or a signal's requestId, an update's id). */
export const temporalRequestId = (nonce: string) => `signed-${nonce}`;

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * The request's JSON body, or `empty` when it has none (no bytes, or only white space). 400 when its
 * bytes are not UTF-8 (never read with U+FFFD in their place), when it nests deeper than
 * MAX_BODY_JSON_DEPTH (checked on the text before it is parsed), or when it is not JSON: a body cut
 * short is refused, never read as no body (a cancel pinned to a run would stop the current one).
 */
async function jsonBody(c: Context<ControlApiEnv>, empty: unknown): Promise<unknown> {
  let text: string;
  try {
    text = utf8.decode(await c.req.arrayBuffer());
  } catch {
    throw hostError(400, "invalid_request", "request body is not valid UTF-8 (JSON must be UTF-8)");
  }
  if (text.trim() === "") return empty;
  if (jsonDepth(text, MAX_BODY_JSON_DEPTH) > MAX_BODY_JSON_DEPTH) {
    throw hostError(
      400,
      "invalid_request",
      `request body nests arrays and objects more than ${MAX_BODY_JSON_DEPTH} levels deep (the most allowed is ${MAX_BODY_JSON_DEPTH})`,
    );
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw hostError(400, "invalid_request", `request body is not valid JSON: ${(err as Error).message}`);
  }
}

/**
 * 400 unless each of these strings, which go to Temporal as protobuf strings (UTF-8), is well-formed
 * Unicode. Half a surrogate pair (a `\ud800` escape alone) cannot be UTF-8: Temporal refuses the call
 * as INTERNAL (our 500), or, at the end of a string, the client writes U+FFFD in its place and a
 * start runs under another workflow id than the one it answers with.
 */
function requireWellFormed(fields: Record<string, string | undefined>): void {
  for (const [field, value] of Object.entries(fields)) {
    if (value !== undefined && !value.isWellFormed()) {
      throw hostError(
        400,
        "invalid_request",
        `${field} has half a surrogate pair (a \\ud800 escape alone), which is not text Temporal can take`,
      );
    }
  }
}

export function createControlApi(deps: ControlApiDeps): Hono<ControlApiEnv> {
  const app = new Hono<ControlApiEnv>();

  app.get("/health", (c) => c.json({ ok: true }));
  const nonces = deps.nonces ?? new NonceMemory();
  const callWaitMs = deps.callWaitMs ?? TEMPORAL_CALL_WAIT_MS;
  /** `calls` within TEMPORAL_CALL_WAIT_MS: past it, TemporalDeadlineError (503 temporal_timed_out, from onError). */
  const inTime = <T>(calls: () => Promise<T>) => withinDeadline(deps.client, callWaitMs, calls);

  app.use("/v1/*", async (c, next) => {
    const url = new URL(c.req.url);
    // The body is read (to check its hash) only once the signature over the headers checks out,
    // and only up to MAX_SIGNED_BODY_BYTES.
    const readBody = () =>
      readSignedBody(c.req).catch((err: unknown) => {
        if (err instanceof BodyTooLargeError) throw hostError(413, "payload_too_large", err.message);
        throw err;
      });
    const verdict = await verifyRequest(deps.sharedSecrets, c.req.method, url.pathname + url.search, c.req.raw.headers, readBody);
    if (!verdict.ok)
      throw hostError(401, verdict.reason, "request to the host is not signed with the shared secret, or its signature is stale");
    if (!nonces.claim(verdict.nonce, verdict.expiresAt)) throw hostError(401, "replayed_signature", "this signed request was already used");
    c.set("signedNonce", verdict.nonce);
    await next();
  });

  /**
   * The run an earlier attempt of a start put in Temporal, followed (a no-op if it already is): that
   * attempt's host may have restarted since, or its follow died with it, and the edge's watchdog
   * would only notice after the run had been quiet for a while.
   */
  const followed = (workflowId: string, runId: string) => {
    deps.relay.follow(workflowId, runId);
    return runId;
  };

  app.post(HOST_PATHS.start, async (c) => {
    const parsed = startRunRequest.safeParse(await jsonBody(c, null));
    if (!parsed.success) throw hostError(400, "invalid_request", parsed.error.message);
    requireWellFormed({ workflowId: parsed.data.workflowId });
    const startWaitMs = deps.startWaitMs ?? START_WAIT_MS;
    try {
      return await withinDeadline(deps.client, startWaitMs, () => startRun(c, parsed.data));
    } catch (err) {
      if (!(err instanceof TemporalDeadlineError)) throw err;
      // Temporal may have started the run; the edge's outbox sends the start again with its accept
      // id, and that retry answers with the run if there is one.
      throw hostError(
        504,
        "start_outcome_unknown",
        `Temporal did not answer the start within ${startWaitMs / 1000} s; it may have started the run (a start sent again with the same acceptId and retry: true answers with it)`,
      );
    }
  });

  /** A start's calls to Temporal (the route's deadline is around them). */
  async function startRun(c: Context<ControlApiEnv>, request: StartRunRequest): Promise<Response> {
    const { workflowId, workflowName, input, executionTimeoutMs, envs, acceptId, retry } = request;
    // A retried start (same accept id) whose earlier attempt did reach Temporal: answer with that run,
    // first (even a workflow that has left this host's catalog since: its run exists, and a
    // refusal would make the edge record as failed a run that is going on).
    const earlier = acceptId && retry ? await acceptedExecution(deps.client, workflowId, acceptId) : null;
    if (earlier) return c.json({ workflowId, runId: followed(workflowId, earlier) });
    if (!isStartable(workflowName)) throw hostError(404, "workflow_not_found", `no workflow named "${workflowName}" on this host`);
    try {
      const handle = await deps.client.workflow.start(workflowName, {
        taskQueue: deps.taskQueue,
        workflowId,
        args: [input],
        workflowExecutionTimeout: executionTimeoutMs ?? deps.defaultExecutionTimeoutMs,
        // An accepted start runs once. Temporal would let a second run use the id of one that has
        // closed, so without this an attempt that reaches Temporal after another attempt's run has
        // already ended (the first one delayed past the edge's timeout, then its retry, whose describe
        // came too early to see it) would run the workflow twice. Rejected, it lands in the conflict
        // branch below, which answers with the run that has this accept id.
        ...(acceptId ? { workflowIdReusePolicy: "REJECT_DUPLICATE" as const } : {}),
        // Sealed: the memo is part of Temporal history.
        memo: {
          ...(envs && deps.envs ? deps.envs.memoFor(envs) : {}),
          ...(acceptId ? { [ACCEPT_ID_MEMO_KEY]: acceptId } : {}),
        },
      });
      deps.envs?.started(workflowId, envs ?? {});
      deps.relay.follow(workflowId, handle.firstExecutionRunId);
      // A start with an accept id comes from the run's DO, which records run.started itself (and
      // retries until it has the answer). Others get a push, not awaited: the answer has the run id too.
      if (!acceptId) {
        const started = runStartedEvent(handle.firstExecutionRunId);
        void deps.edge.pushRunEvents(workflowId, [started]).catch((err) => console.warn(`push run.started: ${String(err)}`));
      }
      return c.json({ workflowId, runId: handle.firstExecutionRunId });
    } catch (err) {
      if (err instanceof WorkflowExecutionAlreadyStartedError) {
        // Two attempts of the same start raced (the other may even have ended): its run is this start's run.
        const raced = acceptId ? await acceptedExecution(deps.client, workflowId, acceptId) : null;
        if (raced) return c.json({ workflowId, runId: followed(workflowId, raced) });
        throw hostError(409, "workflow_id_in_use", `a run with workflow id ${workflowId} already exists`);
      }
      // Temporal refused the request itself and started nothing: the caller's 4xx, not our 500. Its
      // blob size limit (2 MB by default) is the one a start within the host's body cap can pass.
      if (grpcCodeOf(err) === GRPC.INVALID_ARGUMENT) {
        const why = grpcMessageOf(err);
        if (BLOB_SIZE_REFUSAL.test(why)) throw hostError(413, "payload_too_large", `Temporal refused the start: ${why}`);
        throw hostError(400, "invalid_request", `Temporal refused the start: ${why}`);
      }
      throw err;
    }
  }

  // The edge's watchdog calls this for a quiet run: follow it again (a no-op if already followed).
  app.post("/v1/runs/:workflowId/follow", async (c) => {
    const workflowId = c.req.param("workflowId");
    await inTime(() => describeRun(deps.client, workflowId)); // 404 for an unknown run
    deps.relay.follow(workflowId);
    return c.json({ following: true });
  });

  /** What @temporalio/workflow says when a query names no handler of the running workflow (internals.js). */
  const MISSING_QUERY_HANDLER = /Workflow did not register a handler for /;
  const KINDS: Record<"signal" | "query" | "update", HandlerKind> = { signal: "signals", query: "queries", update: "updates" };

  /** A run that is still open, or 409: handlers and stops need a live run. */
  async function openRun(workflowId: string, runId?: string) {
    const described = await describeRun(deps.client, workflowId, runId);
    if (TERMINAL_STATUSES.has(described.status)) {
      throw hostError(409, "run_finished", `run ${workflowId} already ended (${described.status})`);
    }
    return described;
  }

  /**
   * A message to a run `openRun` found open. Temporal answers NOT_FOUND to one that reaches a run
   * that has ended since: that is 409 run_finished, as if it had ended before, not 404 for a run
   * that exists.
   */
  async function toOpenRun<T>(workflowId: string, send: () => Promise<T>, runId?: string): Promise<T> {
    try {
      return await send();
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) await openRun(workflowId, runId); // 409 if it ended; 404 if it is gone
      throw err;
    }
  }

  app.post("/v1/runs/:workflowId/:kind{signal|query|update}/:name", async (c) => {
    const workflowId = c.req.param("workflowId");
    const kind = c.req.param("kind") as "signal" | "query" | "update";
    const name = c.req.param("name");
    const parsed = interactRequest.safeParse(await jsonBody(c, null));
    if (!parsed.success) throw hostError(400, "invalid_request", parsed.error.message);
    // A query's wait counts from here: the look-up before it is part of it (both under the edge's wait).
    const queryWaitMs = deps.queryWaitMs ?? QUERY_WAIT_MS;
    const queryDeadline = Date.now() + queryWaitMs;
    // Nothing is sent yet: a look-up Temporal does not answer in time is 503 temporal_timed_out.
    const described = await inTime(() => (kind === "query" ? describeRun(deps.client, workflowId) : openRun(workflowId)));
    if (!hasHandler(described.workflowName, KINDS[kind], name)) {
      throw hostError(404, "handler_not_found", `workflow ${described.workflowName} has no ${kind} handler named "${name}"`);
    }
    const handle = deps.client.workflow.getHandle(workflowId);
    const args = parsed.data.payload === undefined ? [] : [parsed.data.payload];
    const waitMs = deps.updateWaitMs ?? UPDATE_WAIT_MS;
    try {
      if (kind === "signal") {
        await inTime(() =>
          toOpenRun(workflowId, () => signalRun(deps.client, workflowId, name, args, temporalRequestId(c.get("signedNonce")))),
        );
        return c.json({});
      }
      if (kind === "query") {
        return c.json({ result: await deps.client.withDeadline(queryDeadline, () => handle.query(name, ...args)) });
      }
      // The look-up after a NOT_FOUND (toOpenRun) counts toward the update's wait too.
      const result = await withinDeadline(deps.client, waitMs, () =>
        toOpenRun(workflowId, () =>
          handle.executeUpdate(name, { args: args as [unknown], updateId: temporalRequestId(c.get("signedNonce")) }),
        ),
      );
      return c.json({ result });
    } catch (err) {
      if (err instanceof WorkflowUpdateRPCTimeoutOrCancelledError || (kind === "update" && err instanceof TemporalDeadlineError)) {
        // Sent, maybe accepted (an accepted update is durable, and its handler may still run): not a refusal.
        throw hostError(
          504,
          "update_outcome_unknown",
          `the run did not complete the update "${name}" within ${Math.round(waitMs / 1000)} s (its workflow tasks may be failing, or no worker is polling); it may still be applied, so read the run's state before sending it again`,
        );
      }
      if (kind === "signal" && err instanceof TemporalDeadlineError) {
        // Sent, and Temporal did not answer in time: it may have taken it. A 503 would have the
        // edge send it again, as a new signed request (a new request id), so it could be applied twice.
        throw hostError(
          504,
          "signal_outcome_unknown",
          `Temporal did not answer the signal "${name}" within ${Math.round(callWaitMs / 1000)} s of its being sent; it may still be applied, so read the run's state before sending it again`,
        );
      }
      if (kind !== "query" && isTemporalOutage(err)) {
        // The connection to Temporal failed once the signal or update was sent (the run was found
        // open just before): Temporal may have taken it, and its handler may run. A 503 would tell
        // the edge to send it again, as a new signed request (a new request or update id), so it
        // would be applied twice.
        throw hostError(
          504,
          `${kind}_outcome_unknown`,
          `Temporal could not be reached while the ${kind} "${name}" was on its way; it may still be applied, so read the run's state before sending it again`,
        );
      }
      if (err instanceof QueryNotRegisteredError) {
        // Temporal answers every failed query alike, and the SDK calls them all "not registered":
        // a handler that threw is told apart from a missing one by the workflow SDK's own words.
        if (MISSING_QUERY_HANDLER.test(err.message)) throw hostError(404, "handler_not_found", err.message);
        throw hostError(422, "handler_failed", err.message);
      }
      if (err instanceof WorkflowUpdateFailedError || err instanceof QueryRejectedError) {
        throw hostError(422, "handler_failed", failureMessage(err));
      }
      const code = grpcCodeOf(err);
      // The deadline shows as DEADLINE_EXCEEDED, or as CANCELLED ("Call cancelled") when it passes
      // while the client's retry interceptor is between tries (Temporal answered the first try
      // with an error worth retrying, such as its task queue closing).
      const timedOut = code === GRPC.DEADLINE_EXCEEDED || (code === GRPC.CANCELLED && Date.now() >= queryDeadline);
      if (kind === "query" && timedOut) {
        // A query changes nothing, so sending it again is safe; whether it will work depends on the
        // run's workers, so this is no outage's "retry after".
        throw hostError(
          504,
          "query_timed_out",
          `no worker answered the query "${name}" within ${Math.round(queryWaitMs / 1000)} s (the run's workflow tasks may be failing, or no worker is polling its task queue)`,
        );
      }
      // The run refused the message itself, past one of Temporal's per-run limits (signals per run,
      // updates per run), or a query reached a run that closed before it ran any workflow code (so
      // it has no state to answer from): this run will never take it, so it is the caller's 409,
      // not our 500 (Output answers FAILED_PRECONDITION with 409 too).
      if (code === GRPC.FAILED_PRECONDITION || (kind !== "query" && code === GRPC.INVALID_ARGUMENT)) {
        throw hostError(409, "message_rejected", `Temporal refused the ${kind} for this run: ${grpcMessageOf(err)}`);
      }
      throw err;
    }
  });

  // Stop and terminate act on the pinned `runId` when the edge names one, else on the current run.
  app.post("/v1/runs/:workflowId/cancel", async (c) => {
    const workflowId = c.req.param("workflowId");
    const parsed = cancelRequest.safeParse(await jsonBody(c, {}));
    if (!parsed.success) throw hostError(400, "invalid_request", parsed.error.message);
    const { runId } = parsed.data;
    // Past TEMPORAL_CALL_WAIT_MS, 503: the cancellation may have been taken, and asking again is harmless.
    const open = await inTime(async () => {
      const open = await openRun(workflowId, runId);
      // A cancellation that reaches a run which ended meanwhile is accepted by Temporal, and changes nothing.
      await toOpenRun(workflowId, () => deps.client.workflow.getHandle(workflowId, runId).cancel(), runId);
      return open;
    });
    return c.json({ status: "cancelling", runId: open.runId });
  });

  app.post("/v1/runs/:workflowId/terminate", async (c) => {
    const workflowId = c.req.param("workflowId");
    const parsed = terminateRequest.safeParse(await jsonBody(c, {}));
    if (!parsed.success) throw hostError(400, "invalid_request", parsed.error.message);
    const { runId, reason } = parsed.data;
    requireWellFormed({ reason });
    // Past TEMPORAL_CALL_WAIT_MS, 503: asked again, a run the first terminate did end is 409 run_finished.
    const open = await inTime(async () => {
      const open = await openRun(workflowId, runId);
      await toOpenRun(
        workflowId,
        () => deps.client.workflow.getHandle(workflowId, runId).terminate(reason ?? "terminated through the API"),
        runId,
      );
      return open;
    });
    return c.json({ status: "terminated", runId: open.runId });
  });

  app.post("/v1/runs/:workflowId/reset", async (c) => {
    const workflowId = c.req.param("workflowId");
    const parsed = resetRequest.safeParse(await jsonBody(c, null));
    if (!parsed.success) throw hostError(400, "invalid_request", parsed.error.message);
    const { stepName, reason, runId } = parsed.data;
    // The step name goes into the reset's default reason.
    requireWellFormed({ stepName, reason });
    const resetWaitMs = deps.resetWaitMs ?? RESET_WAIT_MS;
    try {
      const reset = await withinDeadline(deps.client, resetWaitMs, () =>
        resetToAfterStep(deps.client, workflowId, stepName, reason, runId, temporalRequestId(c.get("signedNonce"))),
      );
      // The relay moves on to the new run once the old one's history ends.
      deps.relay.followReset(workflowId, reset.runId);
      return c.json(reset);
    } catch (err) {
      if (err instanceof StepNotFoundError) throw hostError(404, "step_not_found", err.message);
      if (err instanceof StepNotCompletedError) throw hostError(409, "step_not_completed", err.message);
      if (err instanceof RunNotFoundError) throw hostError(404, "run_not_found", err.message);
      if (err instanceof TemporalDeadlineError) {
        // Temporal may have reset the run: never a 503 inviting a retry, which would reset the new run again.
        throw hostError(
          504,
          "reset_outcome_unknown",
          `Temporal did not answer the reset within ${resetWaitMs / 1000} s; it may still take effect: read the workflow's current run before resetting again`,
        );
      }
      throw err;
    }
  });

  // Readiness (the edge's GET /ready): Temporal must answer a cheap call within READY_TIMEOUT_MS.
  app.get(HOST_PATHS.ready, async (c) => {
    try {
      await deps.client.connection.withDeadline(Date.now() + READY_TIMEOUT_MS, () => deps.client.workflowService.getSystemInfo({}));
    } catch (err) {
      throw hostError(503, "temporal_unavailable", `Temporal did not answer: ${(err as Error).message}`);
    }
    return c.json({ ok: true });
  });

  app.get(HOST_PATHS.metrics, (c) =>
    c.json({ historyRequests: deps.relay.historyRequests, runsFollowed: deps.relay.size, edgePushes: deps.edge.counters }),
  );

  app.get("/v1/runs/:workflowId", async (c) => c.json(await inTime(() => describeRun(deps.client, c.req.param("workflowId")))));

  app.get("/v1/runs/:workflowId/result", async (c) => {
    const waitParam = c.req.query("waitMs");
    if (waitParam !== undefined && !WAIT_MS_PATTERN.test(waitParam))
      throw hostError(400, "invalid_request", "waitMs must be a whole number of milliseconds (0 or more)");
    const waitMs = Math.min(MAX_RESULT_WAIT_MS, Number(waitParam ?? 0));
    const workflowId = c.req.param("workflowId");
    // `runId`: the caller knows the run (the DO that just started it), so a completed run is
    // answered from its close event, without describing it first. A hint, not a pin: every other
    // answer (a wait of 0 included: there is no close event to wait for) is the workflow's latest
    // run's, as without it.
    const runId = c.req.query("runId");
    if (runId !== undefined && !RUN_ID_PATTERN.test(runId))
      throw hostError(400, "invalid_request", "runId must be a Temporal run id (a UUID)");
    // A caller that hangs up (the edge's own caller left) ends the wait: its poll of Temporal is stopped.
    const left = c.req.raw.signal;
    // The reads once the wait is over get TEMPORAL_CALL_WAIT_MS (503 temporal_timed_out past it: a read, safe to repeat).
    const answer = await withinDeadline(deps.client, waitMs + callWaitMs, async () => {
      if (runId && waitMs > 0) {
        const deadline = Date.now() + waitMs;
        const completed = await completedRunResult(deps.client, workflowId, runId, waitMs, left);
        if (completed) return completed;
        return runResult(deps.client, workflowId, Math.max(0, deadline - Date.now()), undefined, left);
      }
      return runResult(deps.client, workflowId, waitMs, undefined, left);
    });
    return c.json(answer);
  });

  // In the host's error body, so the edge knows the host did nothing (a proxy's 404 says nothing).
  app.notFound((c) =>
    c.json(
      {
        error: {
          code: "route_not_found",
          message: `no route ${c.req.method.slice(0, MAX_QUOTED_METHOD)} ${new URL(c.req.url).pathname.slice(0, MAX_QUOTED_PATH)}`,
        },
      },
      404,
    ),
  );

  app.onError((err, c) => {
    if (err instanceof HTTPException) return err.getResponse();
    if (err instanceof WorkflowNotFoundError) {
      return c.json({ error: { code: "run_not_found", message: err.message } }, 404);
    }
    // A read or a stop Temporal did not answer in time (the routes whose call may have changed
    // something and cannot be repeated answer their own *_outcome_unknown): a retry later is safe.
    if (err instanceof TemporalDeadlineError) {
      return c.json({ error: { code: "temporal_timed_out", message: err.message } }, 503);
    }
    // Temporal is down or unreachable, or sheds load (rate and concurrency limits): a retry later works.
    if (isTemporalOutage(err)) {
      return c.json({ error: { code: "temporal_unavailable", message: "Temporal is not reachable from the host" } }, 503);
    }
    if (grpcCodeOf(err) === GRPC.RESOURCE_EXHAUSTED) {
      return c.json({ error: { code: "temporal_busy", message: `Temporal is shedding load: ${grpcMessageOf(err)}` } }, 503);
    }
    // Temporal refused the request as malformed (what the routes did not check first): the
    // caller's 400, which sending it again will not change, not the host's 500.
    if (grpcCodeOf(err) === GRPC.INVALID_ARGUMENT) {
      return c.json({ error: { code: "invalid_request", message: `Temporal refused the request: ${grpcMessageOf(err)}` } }, 400);
    }
    console.error("control API error", err);
    return c.json({ error: { code: "host_error", message: "the host failed to handle the request" } }, 500);
  });

  return app;
}
